"""Signed envelopes and certificate chains (attestation/)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import envelope, pki


@pytest.fixture(scope="module")
def device() -> pki.Identity:
    return pki.make_device_cert("sn-1")


def _resolver(identity: pki.Identity):  # type: ignore[no-untyped-def]
    return lambda h: identity.cert if h == identity.sha256 else None


def test_a_sealed_body_opens_with_its_signer(device):
    opened = envelope.open_envelope(envelope.seal({"a": [1, 2]}, device), _resolver(device))
    assert opened.body == {"a": [1, 2]} and opened.signer_sha256 == device.sha256


def test_a_changed_payload_fails_verification(device):
    wire = envelope.seal({"a": 1}, device)
    inner = json.loads(base64.b64decode(wire["payload"]))
    inner["body"]["a"] = 2
    wire["payload"] = base64.b64encode(json.dumps(inner).encode()).decode()
    with pytest.raises(envelope.BadSignature):
        envelope.open_envelope(wire, _resolver(device))


def test_an_unknown_signer_is_reported_as_such(device):
    with pytest.raises(envelope.UnknownSigner):
        envelope.open_envelope(envelope.seal({}, device), lambda h: None)


def test_an_old_envelope_is_stale(device):
    wire = envelope.seal({}, device, now=1000.0)
    with pytest.raises(envelope.StaleEnvelope):
        envelope.open_envelope(wire, _resolver(device), now=2000.0)


def test_freshness_can_be_skipped_for_stored_documents(device):
    wire = envelope.seal({}, device, now=1000.0)
    assert envelope.open_envelope(wire, _resolver(device), max_skew_s=None).timestamp == 1000.0


@pytest.mark.parametrize(
    "wire",
    [
        None,
        [],
        {"payload": "x"},
        {"payload": "!!", "sender_cert_sha256": "0" * 64, "signature": "AA=="},
    ],
)
def test_malformed_envelopes_are_refused(wire, device):
    with pytest.raises(envelope.MalformedEnvelope):
        envelope.open_envelope(wire, _resolver(device))


def test_a_leaf_verifies_only_under_its_own_issuer_and_usage():
    root, other = pki.make_ca("root"), pki.make_ca("other")
    leaf = pki.issue_cert(root, "signing", usage=ExtendedKeyUsageOID.CODE_SIGNING)
    pki.verify_chain(leaf.cert, root.cert, usage=ExtendedKeyUsageOID.CODE_SIGNING)
    with pytest.raises(pki.CertError):
        pki.verify_chain(leaf.cert, other.cert)
    with pytest.raises(pki.CertError):
        pki.verify_chain(leaf.cert, root.cert, usage=ExtendedKeyUsageOID.SERVER_AUTH)


def test_a_leaf_cannot_act_as_an_issuer():
    root = pki.make_ca("root")
    leaf = pki.issue_cert(root, "tls", usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=["localhost"])
    with pytest.raises(pki.CertError, match="not a CA"):
        pki.verify_chain(pki.make_device_cert("x").cert, leaf.cert)


def test_private_keys_are_written_0600(tmp_path):
    pki.save_identity(pki.make_device_cert("x"), tmp_path / "d.pem", tmp_path / "d.key")
    assert (tmp_path / "d.key").stat().st_mode & 0o777 == 0o600
