"""Register answers as EVE's: 201 · 200 · 409 · 403 · 401 · 422 (and 413 for size)."""

from __future__ import annotations

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import pki
from tests.device_sim import SimDevice


@pytest.fixture
def device(controller_dir, tmp_path):  # type: ignore[no-untyped-def]
    return SimDevice.from_bundle(controller_dir.bundle(tmp_path / "bundle"), "sn-0001")


def _claim(client, headers, serial="sn-0001"):  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/nodes/claim", json={"serial": serial}, headers=headers)
    assert r.status_code == 201, r.json


def _nodes(client, headers):  # type: ignore[no-untyped-def]
    return client.get("/api/v1/nodes", headers=headers).json["nodes"]


def test_register_of_a_claimed_serial_returns_201_and_a_uuid(client, admin_headers, device):
    _claim(client, admin_headers)
    r = client.post("/api/v1/device/register", json=device.register_body())
    assert r.status_code == 201
    assert len(r.json["node_uuid"]) == 36
    (node,) = _nodes(client, admin_headers)
    assert node["state"] == "registered" and node["uuid"] == r.json["node_uuid"]


def test_register_repeated_with_the_same_cert_returns_200_and_the_same_uuid(
    client, admin_headers, device
):
    _claim(client, admin_headers)
    first = client.post("/api/v1/device/register", json=device.register_body())
    again = client.post("/api/v1/device/register", json=device.register_body())
    assert again.status_code == 200
    assert again.json["node_uuid"] == first.json["node_uuid"]


def test_register_with_another_device_cert_returns_409(client, admin_headers, device):
    _claim(client, admin_headers)
    client.post("/api/v1/device/register", json=device.register_body())
    impostor = SimDevice(device.serial, device.onboarding)
    r = client.post("/api/v1/device/register", json=impostor.register_body())
    assert r.status_code == 409
    (node,) = _nodes(client, admin_headers)
    assert node["uuid"] is not None


def test_register_of_an_unknown_serial_returns_403_and_changes_nothing(
    client, admin_headers, device
):
    r = client.post("/api/v1/device/register", json=device.register_body())
    assert r.status_code == 403
    assert r.json["error"]["code"] == "not_claimed"
    assert _nodes(client, admin_headers) == []


def test_register_with_an_onboarding_cert_from_another_ca_returns_401(
    client, admin_headers, device
):
    _claim(client, admin_headers)
    rogue_ca = pki.make_ca("rogue onboarding CA")
    rogue = pki.issue_cert(rogue_ca, "rogue", usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    r = client.post("/api/v1/device/register", json=SimDevice(device.serial, rogue).register_body())
    assert r.status_code == 401
    (node,) = _nodes(client, admin_headers)
    assert node["state"] == "claimed"


def test_register_signed_by_a_different_key_returns_401(client, admin_headers, device):
    _claim(client, admin_headers)
    wire = device.register_body()
    other = SimDevice(device.serial, pki.make_device_cert("x"))
    wire["signature"] = other.signed({"x": 1})["signature"]
    r = client.post("/api/v1/device/register", json=wire)
    assert r.status_code == 401


def test_register_with_an_invalid_serial_returns_422_naming_the_field(
    client, admin_headers, device
):
    r = client.post("/api/v1/device/register", json=device.register_body(serial="bad serial!"))
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["field"] == "serial"


def test_register_with_a_non_envelope_body_returns_422(client):
    r = client.post("/api/v1/device/register", json={"serial": "sn-0001"})
    assert r.status_code == 422


def test_an_oversized_device_request_returns_413_and_changes_nothing(client, admin_headers, device):
    _claim(client, admin_headers)
    body = device.register_body(inventory={"blob": "x" * (2 * 1024 * 1024)})
    r = client.post("/api/v1/device/register", json=body)
    assert r.status_code == 413
    (node,) = _nodes(client, admin_headers)
    assert node["state"] == "claimed"


def test_a_replayed_register_request_is_refused(client, admin_headers, device):
    _claim(client, admin_headers)
    wire = device.register_body()
    assert client.post("/api/v1/device/register", json=wire).status_code == 201
    r = client.post("/api/v1/device/register", json=wire)
    assert r.status_code == 401 and r.json["error"]["code"] == "replayed"


def test_a_stale_signed_request_is_refused(client, admin_headers, device):
    _claim(client, admin_headers)
    from attestation import envelope

    body = {
        "serial": device.serial,
        "onboarding_cert_pem": device.onboarding.cert_pem(),
        "device_cert_pem": device.device.cert_pem(),
    }
    wire = envelope.seal(body, device.onboarding, now=1_000_000.0)
    assert client.post("/api/v1/device/register", json=wire).status_code == 401


def test_an_unclaimed_genuine_node_is_listed_as_pending_and_can_be_approved(
    client, admin_headers, device
):
    assert client.post("/api/v1/device/register", json=device.register_body()).status_code == 403
    (pending,) = client.get("/api/v1/pending", headers=admin_headers).json["pending"]
    assert pending["serial"] == device.serial and pending["attempts"] == 1
    client.post(f"/api/v1/pending/{device.serial}/approve", headers=admin_headers)
    assert client.post("/api/v1/device/register", json=device.register_body()).status_code == 201
    assert client.get("/api/v1/pending", headers=admin_headers).json["pending"] == []


def test_a_node_with_a_foreign_onboarding_cert_is_not_listed_as_pending(
    client, admin_headers, device
):
    rogue = pki.issue_cert(pki.make_ca("rogue"), "r", usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    client.post("/api/v1/device/register", json=SimDevice(device.serial, rogue).register_body())
    assert client.get("/api/v1/pending", headers=admin_headers).json["pending"] == []
