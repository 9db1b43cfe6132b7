"""TPM2_MakeCredential in software (the controller's side of credential activation).

The controller encrypts a random secret to a node's EK so that only a TPM holding that EK
AND an object named ``ak_name`` can recover it with TPM2_ActivateCredential (TPM 2.0
Part 1 §24, Part 3 §12.5/§12.6)::

    seed            RSA EK: random, RSA-OAEP(nameAlg, label "IDENTITY\\0") to the EK
                    ECC EK: KDFe(nameAlg, ECDH(ephemeral, EK).x, "IDENTITY",
                            ephemeral.x, EK.x); the ephemeral point is the "secret"
    symKey          KDFa(nameAlg, seed, "STORAGE", ak_name, "", EK symmetric key bits)
    encIdentity     AES-CFB(symKey, IV 0) of TPM2B_DIGEST(credential)
    HMACkey         KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
    outerHMAC       HMAC(nameAlg, HMACkey, encIdentity || ak_name)
    id_object       TPM2B_ID_OBJECT(TPM2B_DIGEST(outerHMAC) || encIdentity)

KDFa and KDFe are SP 800-108 counter-mode HMAC and SP 800-56A concatenation KDFs, taken
from ``cryptography`` (nothing here implements a primitive). ``nameAlg`` and the symmetric
cipher are the EK's own, read from its TPM2B_PUBLIC. EK kinds: RSA 2048..4096 and ECC
NIST P-256/P-384/P-521, name algorithms SHA-256/384/512, AES-128/256 in CFB mode: every
TCG EK template (low and high range).
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from tpm2_pytss import TPM2_ALG, TPM2_ECC, TPM2B_PUBLIC, TPMA_OBJECT

__all__ = [
    "CredentialError",
    "MadeCredential",
    "kdfa",
    "kdfe",
    "make_credential",
    "parse_tpm_public",
    "tpm_public_key",
]

_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    int(TPM2_ALG.SHA256): hashes.SHA256,
    int(TPM2_ALG.SHA384): hashes.SHA384,
    int(TPM2_ALG.SHA512): hashes.SHA512,
}
_CURVES: dict[int, ec.EllipticCurve] = {
    int(TPM2_ECC.NIST_P256): ec.SECP256R1(),
    int(TPM2_ECC.NIST_P384): ec.SECP384R1(),
    int(TPM2_ECC.NIST_P521): ec.SECP521R1(),
}
_EK_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
MAX_CREDENTIAL_BYTES = 32
"""The secret fits any name algorithm's digest (the TPM refuses a longer one)."""


class CredentialError(ValueError):
    """The EK public area cannot take a credential (kind, algorithm or structure)."""


@dataclass(frozen=True)
class MadeCredential:
    """What goes to the node: both marshalled, as TPM2_ActivateCredential takes them."""

    id_object: bytes
    """TPM2B_ID_OBJECT (credentialBlob)."""
    encrypted_secret: bytes
    """TPM2B_ENCRYPTED_SECRET (the seed, encrypted to the EK)."""


def _hash(alg: Any) -> hashes.HashAlgorithm:
    try:
        return _HASHES[int(alg)]()
    except KeyError:
        raise CredentialError(f"name algorithm {alg} is not SHA-256/384/512") from None


def kdfa(
    alg: Any, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int
) -> bytes:
    """TPM KDFa (Part 1 §11.4.10.2): HMAC counter mode, label terminated by one 0 byte."""
    return KBKDFHMAC(
        algorithm=_hash(alg),
        mode=Mode.CounterMode,
        length=bits // 8,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=label,
        context=context_u + context_v,
        fixed=None,
    ).derive(key)


def kdfe(alg: Any, z: bytes, use: bytes, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """TPM KDFe (Part 1 §11.4.10.3): hash(counter || Z || use\\0 || partyU || partyV)."""
    return ConcatKDFHash(
        algorithm=_hash(alg), length=bits // 8, otherinfo=use + b"\0" + party_u + party_v
    ).derive(z)


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def parse_tpm_public(data: bytes, what: str = "key") -> Any:
    """Unmarshal a TPM2B_PUBLIC (no trailing bytes) and return its TPMT_PUBLIC."""
    try:
        pub, used = TPM2B_PUBLIC.unmarshal(data)
    except Exception as exc:  # the TSS raises its own errors for truncated input
        raise CredentialError(f"{what} is not a TPM2B_PUBLIC: {exc}") from exc
    if used != len(data):
        raise CredentialError(f"{what} has {len(data) - used} trailing bytes")
    return pub.publicArea


def tpm_public_key(area: Any) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The ``cryptography`` public key of a TPMT_PUBLIC (RSA or ECC)."""
    try:
        if area.type == TPM2_ALG.RSA:
            exponent = int(area.parameters.rsaDetail.exponent) or 65537
            modulus = int.from_bytes(bytes(area.unique.rsa), "big")
            return rsa.RSAPublicNumbers(exponent, modulus).public_key()
        if area.type == TPM2_ALG.ECC:
            curve = _CURVES.get(int(area.parameters.eccDetail.curveID))
            if curve is None:
                raise CredentialError(f"ECC curve {area.parameters.eccDetail.curveID} unsupported")
            x = int.from_bytes(bytes(area.unique.ecc.x), "big")
            y = int.from_bytes(bytes(area.unique.ecc.y), "big")
            return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except ValueError as exc:
        raise CredentialError(f"the public key is not valid: {exc}") from exc
    raise CredentialError(f"key type {area.type} is neither RSA nor ECC")


def _check_ek(area: Any) -> tuple[hashes.HashAlgorithm, int]:
    """The EK's name hash and AES key bits, after checking it is a restricted decryption key."""
    attrs = area.objectAttributes
    if attrs & _EK_ATTRS != _EK_ATTRS or attrs & TPMA_OBJECT.SIGN_ENCRYPT:
        raise CredentialError(f"the EK is not a TPM-resident restricted decryption key ({attrs})")
    sym = area.parameters.asymDetail.symmetric
    if sym.algorithm != TPM2_ALG.AES or sym.mode.aes != TPM2_ALG.CFB:
        raise CredentialError("the EK's symmetric cipher is not AES-CFB")
    bits = int(sym.keyBits.aes)
    if bits not in (128, 256):
        raise CredentialError(f"the EK's AES key size {bits} is not 128 or 256")
    return _hash(area.nameAlg), bits


def _seed(area: Any, digest: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(seed, encrypted seed) for the EK ``area``, as TPM2_MakeCredential makes them."""
    key = tpm_public_key(area)
    if isinstance(key, rsa.RSAPublicKey):
        seed = os.urandom(digest.digest_size)
        oaep = padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=b"IDENTITY\0")
        return seed, key.encrypt(seed, oaep)
    size = (key.curve.key_size + 7) // 8
    ephemeral = ec.generate_private_key(key.curve)
    z = ephemeral.exchange(ec.ECDH(), key)
    eph = ephemeral.public_key().public_numbers()
    eph_x, eph_y = eph.x.to_bytes(size, "big"), eph.y.to_bytes(size, "big")
    ek_x = key.public_numbers().x.to_bytes(size, "big")
    seed = kdfe(area.nameAlg, z, b"IDENTITY", eph_x, ek_x, digest.digest_size * 8)
    return seed, _tpm2b(eph_x) + _tpm2b(eph_y)  # TPMS_ECC_POINT


def make_credential(ek_public: bytes, ak_name: bytes, secret: bytes) -> MadeCredential:
    """Encrypt ``secret`` (1..32 bytes) to the EK (marshalled TPM2B_PUBLIC) for the object
    named ``ak_name`` (nameAlg || digest of its public area)."""
    if not 1 <= len(secret) <= MAX_CREDENTIAL_BYTES:
        raise CredentialError(f"the secret must be 1..{MAX_CREDENTIAL_BYTES} bytes")
    area = parse_tpm_public(ek_public, "EK")
    digest, sym_bits = _check_ek(area)
    seed, encrypted_seed = _seed(area, digest)
    sym_key = kdfa(area.nameAlg, seed, b"STORAGE", ak_name, b"", sym_bits)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = encryptor.update(_tpm2b(secret)) + encryptor.finalize()
    hmac_key = kdfa(area.nameAlg, seed, b"INTEGRITY", b"", b"", digest.digest_size * 8)
    mac = hmac.HMAC(hmac_key, type(digest)())
    mac.update(enc_identity + ak_name)
    outer = _tpm2b(mac.finalize())
    return MadeCredential(
        id_object=_tpm2b(outer + enc_identity), encrypted_secret=_tpm2b(encrypted_seed)
    )
