"""MakeCredential in software and the controller's enrolment checks (no TPM: the TPM side
is tests/integration/test_tpm_enrolment.py and the tpm2-tools cross-checks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import warnings

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from attestation.credential import CredentialError, kdfa, kdfe, make_credential
from attestation.enrolment import EnrolmentRefused, check_credential_answer, new_challenge
from protocol.tpm_enrolment import CredentialAnswer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from tpm2_pytss import TPM2_ALG, TPM2B_PUBLIC, TPMA_OBJECT

EK_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.ADMINWITHPOLICY
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
AK_NAME = b"\x00\x0b" + hashlib.sha256(b"an AK public area").digest()


def _rsa_ek(key: rsa.RSAPrivateKey, attrs: int = EK_ATTRS) -> bytes:
    pub = TPM2B_PUBLIC.parse("rsa2048:aes128cfb", objectAttributes=attrs)
    pub.publicArea.unique.rsa = key.public_key().public_numbers().n.to_bytes(256, "big")
    return bytes(pub.marshal())


def _ecc_ek(key: ec.EllipticCurvePrivateKey, spec: str = "ecc384:aes256cfb") -> bytes:
    pub = TPM2B_PUBLIC.parse(spec, objectAttributes=EK_ATTRS, nameAlg="sha384")
    size = (key.curve.key_size + 7) // 8
    numbers = key.public_key().public_numbers()
    pub.publicArea.unique.ecc.x = numbers.x.to_bytes(size, "big")
    pub.publicArea.unique.ecc.y = numbers.y.to_bytes(size, "big")
    return bytes(pub.marshal())


def _kdfa_by_hand(
    key: bytes, label: bytes, context: bytes, bits: int, digest=hashlib.sha256
) -> bytes:  # type: ignore[no-untyped-def]
    """KDFa written out from TPM 2.0 Part 1 §11.4.10.2 (an independent implementation)."""
    out, i = b"", 1
    while len(out) < bits // 8:
        data = struct.pack(">I", i) + label + b"\0" + context + struct.pack(">I", bits)
        out += hmac.new(key, data, digest).digest()
        i += 1
    return out[: bits // 8]


def _take(data: bytes) -> tuple[bytes, bytes]:
    (size,) = struct.unpack(">H", data[:2])
    return data[2 : 2 + size], data[2 + size :]


def _activate_in_software_rsa(key: rsa.RSAPrivateKey, id_object: bytes, secret: bytes) -> bytes:
    """TPM2_ActivateCredential's steps for an RSA EK held in software (Part 3 §12.5)."""
    encrypted_seed, _ = _take(secret)
    seed = key.decrypt(
        encrypted_seed,
        padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"IDENTITY\0"),
    )
    blob, rest = _take(id_object)
    assert rest == b""
    outer_hmac, enc_identity = _take(blob)
    hmac_key = _kdfa_by_hand(seed, b"INTEGRITY", b"", 256)
    assert hmac.compare_digest(
        outer_hmac, hmac.new(hmac_key, enc_identity + AK_NAME, hashlib.sha256).digest()
    )
    sym_key = _kdfa_by_hand(seed, b"STORAGE", AK_NAME, 128)
    decryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).decryptor()
    credential, rest = _take(decryptor.update(enc_identity) + decryptor.finalize())
    assert rest == b""
    return credential


def test_kdfa_is_the_tpm_counter_mode_hmac():
    assert kdfa(TPM2_ALG.SHA256, b"k" * 32, b"STORAGE", b"name", b"", 256 + 128) == (
        _kdfa_by_hand(b"k" * 32, b"STORAGE", b"name", 384)
    )


def test_kdfe_is_the_hash_of_counter_z_use_and_both_parties():
    expected = hashlib.sha384(struct.pack(">I", 1) + b"Z" + b"IDENTITY\0" + b"U" + b"V").digest()
    assert kdfe(TPM2_ALG.SHA384, b"Z", b"IDENTITY", b"U", b"V", 384) == expected


def test_an_rsa_credential_opens_with_the_ek_private_key_and_the_ak_name():
    key = rsa.generate_private_key(65537, 2048)
    made = make_credential(_rsa_ek(key), AK_NAME, b"\x5a" * 32)
    assert _activate_in_software_rsa(key, made.id_object, made.encrypted_secret) == b"\x5a" * 32


def test_an_ecc_credential_carries_an_ephemeral_point_on_the_ek_curve():
    made = make_credential(_ecc_ek(ec.generate_private_key(ec.SECP384R1())), AK_NAME, b"s" * 32)
    x, rest = _take(made.encrypted_secret[2:])
    y, rest = _take(rest)
    assert rest == b"" and len(x) == len(y) == 48
    ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP384R1()
    ).public_key()  # raises if the point is not on P-384


def test_each_credential_uses_a_fresh_seed():
    ek = _rsa_ek(rsa.generate_private_key(65537, 2048))
    assert (
        make_credential(ek, AK_NAME, b"x").id_object != make_credential(ek, AK_NAME, b"x").id_object
    )


@pytest.mark.parametrize(
    "attrs",
    [
        EK_ATTRS & ~TPMA_OBJECT.RESTRICTED,  # an ordinary decryption key would decrypt the seed
        EK_ATTRS & ~TPMA_OBJECT.FIXEDTPM,
        EK_ATTRS | TPMA_OBJECT.SIGN_ENCRYPT,
    ],
)
def test_a_credential_is_only_made_for_a_restricted_tpm_decryption_key(attrs):
    with pytest.raises(CredentialError, match="restricted decryption key"):
        make_credential(_rsa_ek(rsa.generate_private_key(65537, 2048), attrs), AK_NAME, b"x")


def test_a_secret_longer_than_a_digest_is_refused():
    with pytest.raises(CredentialError, match=r"1\.\.32 bytes"):
        make_credential(_rsa_ek(rsa.generate_private_key(65537, 2048)), AK_NAME, b"x" * 33)


def test_garbage_is_not_an_ek_public():
    with pytest.raises(CredentialError, match="not a TPM2B_PUBLIC"):
        make_credential(b"\x00\x10garbage", AK_NAME, b"x")


def test_the_right_answer_passes_and_any_other_is_refused():
    challenge, secret_sha256 = new_challenge(
        _rsa_ek(rsa.generate_private_key(65537, 2048)), AK_NAME
    )
    assert challenge.ak_name == AK_NAME.hex()
    with pytest.raises(EnrolmentRefused) as refused:
        check_credential_answer(secret_sha256, CredentialAnswer(secret="00" * 32))
    assert refused.value.reason == "bad_answer"
    with pytest.raises(EnrolmentRefused, match="not answered"):
        check_credential_answer(secret_sha256, None)


def test_the_challenge_opens_to_the_secret_whose_hash_is_kept():
    key = rsa.generate_private_key(65537, 2048)
    challenge, secret_sha256 = new_challenge(_rsa_ek(key), AK_NAME)
    secret = _activate_in_software_rsa(
        key,
        base64.b64decode(challenge.id_object),
        base64.b64decode(challenge.encrypted_secret),
    )
    check_credential_answer(secret_sha256, CredentialAnswer(secret=secret.hex()))
