"""Signed envelopes and certificate chains (attestation/)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
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


def _signed_payload(payload: bytes, identity: pki.Identity) -> dict[str, str]:
    """An envelope over hand-written payload bytes (what a hostile client can send)."""
    signature = identity.key.sign(payload, ec.ECDSA(hashes.SHA256()))
    return {
        "payload": base64.b64encode(payload).decode(),
        "sender_cert_sha256": identity.sha256,
        "signature": base64.b64encode(signature).decode(),
    }


@pytest.mark.parametrize(
    "timestamp",
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e400",
        b"1" + b"0" * 400,  # 1e400 written as an integer: float() of it overflows
        b"-1",
        b"253402300800",  # the first second of year 10000
        b"true",
        b'"1700000000"',
    ],
)
def test_a_timestamp_that_is_not_a_finite_date_is_refused_as_client_input(device, timestamp):
    payload = b'{"body":{},"request_id":"req-00000001","timestamp":' + timestamp + b"}"
    wire = _signed_payload(payload, device)
    with pytest.raises(envelope.MalformedEnvelope) as refused:
        envelope.open_envelope(wire, _resolver(device), max_skew_s=1e12)
    assert isinstance(refused.value, envelope.InvalidTimestamp | envelope.NumberOutOfRange)


def test_a_nan_timestamp_is_refused_even_without_a_freshness_check(device):
    wire = _signed_payload(b'{"body":{},"request_id":"req-00000001","timestamp":NaN}', device)
    with pytest.raises(envelope.MalformedEnvelope):
        envelope.open_envelope(wire, _resolver(device), max_skew_s=None)


def test_a_nan_in_the_body_is_refused(device):
    payload = b'{"body":{"wait_s":NaN},"request_id":"req-00000001","timestamp":%d}' % time.time()
    with pytest.raises(envelope.NumberOutOfRange):
        envelope.open_envelope(_signed_payload(payload, device), _resolver(device))


def test_a_deeply_nested_body_is_refused_without_recursion(device):
    body = b"[" * 10_000 + b"]" * 10_000
    payload = b'{"body":%s,"request_id":"req-00000001","timestamp":%d}' % (body, time.time())
    with pytest.raises(envelope.MalformedEnvelope, match="levels deep"):
        envelope.open_envelope(_signed_payload(payload, device), _resolver(device))


def test_the_last_second_of_year_9999_is_still_a_timestamp(device):
    wire = envelope.seal({}, device, now=envelope.MAX_TIMESTAMP)
    opened = envelope.open_envelope(wire, _resolver(device), max_skew_s=None)
    assert opened.timestamp == envelope.MAX_TIMESTAMP


def test_seal_refuses_to_send_a_nan():
    with pytest.raises(ValueError):
        envelope.seal({"x": float("nan")}, pki.make_device_cert("sn-nan"))


def _cert_valid(identity: pki.Identity, before: dt.datetime, after: dt.datetime) -> pki.Identity:
    cert = (
        x509.CertificateBuilder()
        .subject_name(identity.cert.subject)
        .issuer_name(identity.cert.subject)
        .public_key(identity.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(before)
        .not_valid_after(after)
        .sign(identity.key, hashes.SHA256())
    )
    return pki.Identity(cert, identity.key)


def test_an_expired_signer_is_refused_when_dates_are_checked(device):
    now = dt.datetime.now(dt.UTC)
    expired = _cert_valid(device, now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    wire = envelope.seal({}, expired)
    with pytest.raises(envelope.SignerNotValid, match="expired"):
        envelope.open_envelope(wire, _resolver(expired), check_signer_dates=True)
    assert envelope.open_envelope(wire, _resolver(expired)).body == {}  # opt-in check


def test_a_signer_not_yet_valid_is_refused_when_dates_are_checked(device):
    now = dt.datetime.now(dt.UTC)
    future = _cert_valid(device, now + dt.timedelta(days=1), now + dt.timedelta(days=30))
    with pytest.raises(envelope.SignerNotValid, match="not valid before"):
        envelope.open_envelope(
            envelope.seal({}, future), _resolver(future), check_signer_dates=True
        )


def test_check_validity_names_the_certificate_and_the_dates(device):
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=40 * 365)
    with pytest.raises(pki.CertNotValid, match=r"device certificate .* expired at"):
        pki.check_validity(device.cert, later, "device certificate")
    pki.check_validity(device.cert)
