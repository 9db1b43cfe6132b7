"""TPM enrolment on real swtpm: EK certificates made by swtpm_setup under a local CA, the
controller's checks (attestation/enrolment.py) and the node's TPM2_ActivateCredential.

The attacks: a TPM without an EK certificate, or with one from a maker not in the bundle;
an AK that is a software key dressed up as a TPM key (the attributes are only claims in
the public area it sends); another TPM's AK presented with this TPM's EK certificate; an
EK public area that is not the certified key; a tampered AK public area."""

from __future__ import annotations

import base64
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestation.ek_cert import EkCaBundle, ek_fingerprint
from attestation.enrolment import (
    EnrolmentRefused,
    TpmEnrolment,
    begin_tpm_enrolment,
    check_credential_answer,
)
from attestation.quote import check_ak_public, load_public
from attestation.tpm import AK_ATTRS, Tpm, TpmError, parse_tpm_setting
from attestation.tpm_endorsement import EndorsementError, activate, find_certified_ek
from protocol.tpm_enrolment import CredentialAnswer, TpmRegistration

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from tpm2_pytss import (
        ESAPI,
        ESYS_TR,
        TPM2_ALG,
        TPM2B_PUBLIC,
        TPM2B_SENSITIVE,
        TPMA_OBJECT,
        TPMT_SENSITIVE,
        TSS2_Exception,
    )

pytestmark = pytest.mark.integration


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _registration(tpm: Tpm, ak_public: bytes | None = None) -> TpmRegistration:
    cert = tpm.ek_certificate()
    return TpmRegistration(
        ek_cert=_b64(cert) if cert else None,
        ek_public=_b64(tpm.certified_ek_public() or tpm.public("ek")),
        ak_public=_b64(ak_public or tpm.public("ak")),
    )


def _answer(tpm: Tpm, enrolment: TpmEnrolment) -> bytes:
    challenge = enrolment.challenge
    return tpm.activate_credential(
        base64.b64decode(challenge.id_object), base64.b64decode(challenge.encrypted_secret)
    )


@pytest.fixture
def tpm(certified_tpm: Tpm) -> Tpm:
    return certified_tpm


@pytest.fixture
def bundle(ek_ca_bundle: EkCaBundle) -> EkCaBundle:
    return ek_ca_bundle


def _software_ak(attrs: int = AK_ATTRS) -> tuple[ec.EllipticCurvePrivateKey, TPM2B_PUBLIC]:
    """A key made in software, its public area claiming every attribute of a TPM AK."""
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    pub = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=attrs)
    pub.publicArea.unique.ecc.x = numbers.x.to_bytes(32, "big")
    pub.publicArea.unique.ecc.y = numbers.y.to_bytes(32, "big")
    return key, pub


def test_the_ek_certificate_swtpm_setup_made_verifies_against_the_local_ca(tpm, bundle):
    enrolment = begin_tpm_enrolment(_registration(tpm), bundle)
    assert enrolment.ek.fingerprint == ek_fingerprint(tpm.ek_certificate())
    assert (enrolment.ek.manufacturer, enrolment.ek.model) == ("id:00001014", "swtpm")


def test_the_tpm_answers_the_challenge_for_its_own_ak(tpm, bundle):
    enrolment = begin_tpm_enrolment(_registration(tpm), bundle)
    assert enrolment.challenge.ak_name == tpm.ak_name().hex() == enrolment.ak.name_hex

    check_credential_answer(
        enrolment.secret_sha256, CredentialAnswer(secret=_answer(tpm, enrolment).hex())
    )


def test_an_rsa_ek_behind_its_policy_secret_answers_too(swtpm_with_ek, bundle):
    with Tpm(parse_tpm_setting(swtpm_with_ek.tcti), ek_types=("EK-RSA2048",)) as rsa_tpm:
        rsa_tpm.ensure_keys()
        enrolment = begin_tpm_enrolment(_registration(rsa_tpm), bundle)
        assert enrolment.ek.public_key.key_size == 2048
        answer = CredentialAnswer(secret=_answer(rsa_tpm, enrolment).hex())
    check_credential_answer(enrolment.secret_sha256, answer)


def test_the_ak_attributes_are_read_from_the_tpm_made_public_area(tpm):
    ak = check_ak_public(tpm.public("ak"))
    assert ak.name == tpm.ak_name()
    wanted = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
    assert ak.attributes & wanted == wanted and ak.restricted


def test_a_tpm_without_an_ek_certificate_is_refused(swtpm, bundle):
    with Tpm(parse_tpm_setting(swtpm.tcti)) as bare:
        bare.ensure_keys()
        assert bare.ek_certificate() is None
        with pytest.raises(EnrolmentRefused) as refused:
            begin_tpm_enrolment(_registration(bare), bundle)
        with pytest.raises(TpmError, match="no EK certificate"):
            bare.activate_credential(b"\0\0", b"\0\0")
    assert refused.value.reason == "no_ek_cert"


def test_a_tpm_certified_by_a_maker_outside_the_bundle_is_refused(
    swtpm_factory, foreign_ek_ca, bundle
):  # type: ignore[no-untyped-def]
    foreign = swtpm_factory("foreign", ek_ca=foreign_ek_ca)
    with Tpm(parse_tpm_setting(foreign.tcti)) as other:
        other.ensure_keys()
        with pytest.raises(EnrolmentRefused, match="not trusted") as refused:
            begin_tpm_enrolment(_registration(other), bundle)
    assert refused.value.reason == "ek_untrusted"


def test_a_software_ak_cannot_answer_even_with_a_genuine_certified_tpm(swtpm_with_ek, bundle):
    """The attacker holds a genuine TPM whose EK certificate the bundle trusts, and claims a
    software key (whose private key it holds, so it could forge quotes) is the AK."""
    soft_key, soft_pub = _software_ak()
    check_ak_public(bytes(soft_pub.marshal()))  # its self-declared attributes look right
    with Tpm(parse_tpm_setting(swtpm_with_ek.tcti)) as genuine:
        genuine.ensure_keys()
        registration = _registration(genuine, ak_public=bytes(soft_pub.marshal()))
        enrolment = begin_tpm_enrolment(registration, bundle)
        # 1. the TPM's own AK has another name: the credential's HMAC does not verify
        with pytest.raises(TpmError, match="activation failed"):
            _answer(genuine, enrolment)
    ctx = ESAPI(swtpm_with_ek.tcti)
    try:
        ek = find_certified_ek(ctx)
        assert ek is not None
        blob = base64.b64decode(enrolment.challenge.id_object)
        secret = base64.b64decode(enrolment.challenge.encrypted_secret)
        # 2. its public part loaded from outside has the right name but cannot be authorised
        external = ctx.load_external(soft_pub, None, ESYS_TR.RH_NULL)
        with pytest.raises(EndorsementError, match="activation failed"):
            activate(ctx, external, ek, blob, secret)
        ctx.flush_context(external)
        # 3. loaded with its private part, the TPM refuses fixedTPM/fixedParent ...
        sensitive = TPM2B_SENSITIVE(sensitiveArea=TPMT_SENSITIVE(sensitiveType=TPM2_ALG.ECC))
        sensitive.sensitiveArea.sensitive.ecc = soft_key.private_numbers().private_value.to_bytes(
            32, "big"
        )
        with pytest.raises(TSS2_Exception):
            ctx.load_external(soft_pub, sensitive, ESYS_TR.RH_NULL)
        # ... and without them the AK check refuses it before any challenge is made
        _key, honest = _software_ak(AK_ATTRS & ~(TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT))
        with pytest.raises(EnrolmentRefused) as refused:
            begin_tpm_enrolment(_registration_with(registration, honest), bundle)
        assert refused.value.reason == "bad_ak"
    finally:
        ctx.close()


def _registration_with(registration: TpmRegistration, ak: TPM2B_PUBLIC) -> TpmRegistration:
    return registration.model_copy(update={"ak_public": _b64(bytes(ak.marshal()))})


def test_another_tpms_ak_cannot_be_enrolled_under_this_tpms_ek(swtpm_factory, ek_ca, bundle):  # type: ignore[no-untyped-def]
    a, b = swtpm_factory("a", ek_ca=ek_ca), swtpm_factory("b", ek_ca=ek_ca)
    with (
        Tpm(parse_tpm_setting(a.tcti)) as tpm_a,
        Tpm(parse_tpm_setting(b.tcti)) as tpm_b,
    ):
        tpm_a.ensure_keys()
        tpm_b.ensure_keys()
        mixed = _registration(tpm_a, ak_public=tpm_b.public("ak"))
        enrolment = begin_tpm_enrolment(mixed, bundle)
        with pytest.raises(TpmError, match="activation failed"):
            _answer(tpm_a, enrolment)  # A has no object with B's AK name
        with pytest.raises(TpmError, match="activation failed"):
            _answer(tpm_b, enrolment)  # B cannot decrypt what was made for A's EK


def test_an_ek_public_area_that_is_not_the_certified_key_is_refused(swtpm_factory, ek_ca, bundle):  # type: ignore[no-untyped-def]
    a, b = swtpm_factory("a", ek_ca=ek_ca), swtpm_factory("b", ek_ca=ek_ca)
    with (
        Tpm(parse_tpm_setting(a.tcti)) as tpm_a,
        Tpm(parse_tpm_setting(b.tcti)) as tpm_b,
    ):
        tpm_a.ensure_keys()
        tpm_b.ensure_keys()
        forged = _registration(tpm_a).model_copy(
            update={"ek_public": _b64(tpm_b.certified_ek_public() or b"")}
        )
    with pytest.raises(EnrolmentRefused, match="not the certified key") as refused:
        begin_tpm_enrolment(forged, bundle)
    assert refused.value.reason == "ek_mismatch"


def test_an_ak_public_area_with_restricted_cleared_is_refused(tpm, bundle):
    pub, _ = TPM2B_PUBLIC.unmarshal(tpm.public("ak"))
    pub.publicArea.objectAttributes &= ~TPMA_OBJECT.RESTRICTED
    with pytest.raises(EnrolmentRefused, match="restricted") as refused:
        begin_tpm_enrolment(_registration(tpm, ak_public=bytes(pub.marshal())), bundle)
    assert refused.value.reason == "bad_ak"
    assert load_public(bytes(pub.marshal())).name != tpm.ak_name()  # and it names another key
