"""TPM access on a real swtpm through tpm2-pytss: persisted keys, the TPM-resident device
key, PCR extend, quotes and certifications checked by Outpost's verifier."""

from __future__ import annotations

import hashlib

import pytest

from attestation import envelope, pki
from attestation.measurement import MEASUREMENT_PCR, ZERO_PCR, extend
from attestation.quote import NonceMismatch, QuoteFailed, load_public, verify_certify, verify_quote
from attestation.tpm import Tpm, parse_tpm_setting

pytestmark = pytest.mark.integration
NONCE = bytes(range(32))


@pytest.fixture
def tpm(swtpm):  # type: ignore[no-untyped-def]
    with Tpm(parse_tpm_setting(swtpm.tcti)) as t:
        t.ensure_keys()
        yield t


def test_keys_are_persisted_and_found_again_after_a_reboot(swtpm):  # type: ignore[no-untyped-def]
    with Tpm(parse_tpm_setting(swtpm.tcti)) as first:
        first.ensure_keys()
        publics = {k: first.public(k) for k in ("ek", "ak", "device")}
    swtpm.reboot()
    with Tpm(parse_tpm_setting(swtpm.tcti)) as again:
        again.ensure_keys()
        assert {k: again.public(k) for k in publics} == publics


def test_the_ak_is_a_restricted_tpm_bound_signing_key(tpm: Tpm):
    ak = load_public(tpm.public("ak"), "AK")
    assert ak.restricted


def test_the_device_key_is_unrestricted_and_signs_inside_the_tpm(tpm: Tpm):
    device = load_public(tpm.public("device"), "device key")
    assert not device.restricted
    assert device.key == tpm.device_key().public_key()


def test_a_device_cert_self_signed_by_the_tpm_key_verifies(tpm: Tpm):
    identity = pki.make_device_cert("sn-tpm", tpm.device_key())
    pki.verify_self_signed(identity.cert)
    assert identity.cert.public_key() == tpm.device_key().public_key()


def test_an_envelope_signed_by_the_tpm_key_opens_with_the_device_cert(tpm: Tpm):
    identity = pki.make_device_cert("sn-tpm", tpm.device_key())
    opened = envelope.open_envelope(envelope.seal({"hello": 1}, identity), lambda _: identity.cert)
    assert opened.body == {"hello": 1}


def test_extending_pcr_14_is_what_replay_computes(tpm: Tpm):
    digest = hashlib.sha256(b"measured").digest()
    before = tpm.read_pcrs([MEASUREMENT_PCR])[MEASUREMENT_PCR]
    tpm.extend(MEASUREMENT_PCR, digest)
    assert tpm.read_pcrs([MEASUREMENT_PCR])[MEASUREMENT_PCR] == extend(before, digest)


def test_a_reboot_resets_the_pcrs(swtpm, tpm: Tpm):  # type: ignore[no-untyped-def]
    tpm.extend(MEASUREMENT_PCR, hashlib.sha256(b"x").digest())
    tpm.close()
    swtpm.reboot()
    with Tpm(parse_tpm_setting(swtpm.tcti)) as again:
        assert again.read_pcrs([MEASUREMENT_PCR])[MEASUREMENT_PCR] == ZERO_PCR


def test_a_quote_verifies_under_the_ak_with_its_nonce_and_pcrs(tpm: Tpm):
    tpm.extend(MEASUREMENT_PCR, hashlib.sha256(b"x").digest())
    evidence = tpm.quote(NONCE, [0, 7, MEASUREMENT_PCR])
    info = verify_quote(
        evidence.attest, evidence.signature, load_public(tpm.public("ak")), NONCE, evidence.pcrs
    )
    assert info.pcrs == (0, 7, MEASUREMENT_PCR)


def test_a_quote_checked_against_another_nonce_is_a_nonce_mismatch(tpm: Tpm):
    evidence = tpm.quote(NONCE, [MEASUREMENT_PCR])
    with pytest.raises(NonceMismatch):
        verify_quote(
            evidence.attest, evidence.signature, load_public(tpm.public("ak")), b"\0" * 32,
            evidence.pcrs,
        )  # fmt: skip


def test_a_quote_with_other_pcr_values_fails(tpm: Tpm):
    evidence = tpm.quote(NONCE, [MEASUREMENT_PCR])
    with pytest.raises(QuoteFailed, match="PCR digest"):
        verify_quote(
            evidence.attest, evidence.signature, load_public(tpm.public("ak")), NONCE,
            {MEASUREMENT_PCR: b"\1" * 32},
        )  # fmt: skip


def test_a_quote_from_another_tpm_does_not_verify_under_this_ak(swtpm_factory, tpm: Tpm):  # type: ignore[no-untyped-def]
    with Tpm(parse_tpm_setting(swtpm_factory("other").tcti)) as other:
        other.ensure_keys()
        evidence = other.quote(NONCE, [MEASUREMENT_PCR])
    with pytest.raises(QuoteFailed, match="does not verify"):
        verify_quote(
            evidence.attest, evidence.signature, load_public(tpm.public("ak")), NONCE,
            evidence.pcrs,
        )  # fmt: skip


def test_the_ak_certifies_that_the_device_key_is_in_the_same_tpm(tpm: Tpm):
    attest, signature = tpm.certify_device_key(NONCE)
    verify_certify(
        attest, signature, load_public(tpm.public("ak")), NONCE, load_public(tpm.public("device"))
    )


def test_a_certification_naming_another_key_fails(swtpm_factory, tpm: Tpm):  # type: ignore[no-untyped-def]
    with Tpm(parse_tpm_setting(swtpm_factory("other").tcti)) as other:
        other.ensure_keys()
        foreign = load_public(other.public("device"))
    attest, signature = tpm.certify_device_key(NONCE)
    with pytest.raises(QuoteFailed, match="names another key"):
        verify_certify(attest, signature, load_public(tpm.public("ak")), NONCE, foreign)
