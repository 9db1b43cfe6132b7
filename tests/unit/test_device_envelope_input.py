"""Hostile envelopes on the device API: a NaN, infinite or 400-digit timestamp, a number
out of range in the body, an expired or not-yet-valid certificate — each a 4xx, never an
accepted "fresh" request nor a 500, on register and on every signed request."""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from attestation import pki
from controller.store.models import Node
from tests.device_sim import SimDevice, registered


def _raw_envelope(identity: pki.Identity, payload: bytes) -> dict[str, str]:
    """An envelope over exactly these payload bytes (no encoder in between)."""
    signature = identity.key.sign(payload, ec.ECDSA(hashes.SHA256()))
    return {
        "payload": base64.b64encode(payload).decode(),
        "sender_cert_sha256": identity.sha256,
        "signature": base64.b64encode(signature).decode(),
    }


def _payload(timestamp: str, body: str = '{"config_hash": ""}') -> bytes:
    return f'{{"timestamp": {timestamp}, "request_id": "{uuid.uuid4()}", "body": {body}}}'.encode()


def _cert(identity: pki.Identity, before: dt.timedelta, after: dt.timedelta) -> pki.Identity:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "device dated")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(identity.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + before)
        .not_valid_after(now + after)
        .sign(identity.key, hashes.SHA256())
    )
    return pki.Identity(cert, identity.key)


@pytest.fixture
def device(controller_dir, client, admin_headers, tmp_path):  # type: ignore[no-untyped-def]
    """A registered node (claimed unpinned on the fixture's lenient controller)."""
    return registered(client, admin_headers, controller_dir.bundle(tmp_path / "bundle"), "sn-1")


@pytest.mark.parametrize("timestamp", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_a_non_finite_or_huge_timestamp_is_refused_with_422(client, device, timestamp):
    r = client.post("/api/v1/device/config", json=_raw_envelope(device.device, _payload(timestamp)))
    assert r.status_code == 422, r.json


@pytest.mark.parametrize("timestamp", ["NaN", "1e400"])
def test_a_register_with_a_non_finite_timestamp_is_refused_with_422(client, device, timestamp):
    r = client.post(
        "/api/v1/device/register", json=_raw_envelope(device.onboarding, _payload(timestamp))
    )
    assert r.status_code == 422


def test_a_number_out_of_range_in_the_body_is_refused_with_422(client, device):
    payload = _payload(str(time.time()), '{"config_hash": "", "wait_s": 1e400}')
    r = client.post("/api/v1/device/config", json=_raw_envelope(device.device, payload))
    assert r.status_code == 422


def test_an_expired_device_cert_is_refused_at_register(
    client, admin_headers, controller_dir, tmp_path
):  # type: ignore[no-untyped-def]
    sim = SimDevice.from_bundle(controller_dir.bundle(tmp_path / "b2"), "sn-2")
    sim.device = _cert(sim.device, -dt.timedelta(days=2), -dt.timedelta(days=1))
    client.post("/api/v1/nodes/claim", json={"serial": "sn-2"}, headers=admin_headers)
    r = client.post("/api/v1/device/register", json=sim.register_body())
    assert (r.status_code, r.json["error"]["code"]) == (401, "cert_not_valid")


@pytest.mark.parametrize(
    ("before", "after"),
    [(-dt.timedelta(days=2), -dt.timedelta(days=1)), (dt.timedelta(days=1), dt.timedelta(days=2))],
    ids=["expired", "not-yet-valid"],
)
def test_a_registered_cert_out_of_its_dates_is_refused_on_every_request(
    client, controller_app, device, before, after
):
    """The node's registered certificate has expired since (or is dated in the future):
    its signed requests are refused although the signature is right."""
    dated = _cert(device.device, before, after)
    with controller_app.extensions["outpost"].db.transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == "sn-1"))
        node.device_cert_pem, node.device_cert_sha256 = dated.cert_pem(), dated.sha256
    for path, body in (("attest", {"request": "nonce"}), ("config", {"config_hash": ""})):
        wire = SimDevice(device.serial, device.onboarding, dated).signed(body)
        r = client.post(f"/api/v1/device/{path}", json=wire)
        assert (r.status_code, r.json["error"]["code"]) == (401, "cert_not_valid"), path
