"""Revocation, device cert renewal and config-signing rotation at the API."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import envelope, pki
from controller.domain.tokens import create_token
from tests.device_sim import SimDevice


@pytest.fixture
def node(client, admin_headers, controller_dir, tmp_path):  # type: ignore[no-untyped-def]
    dev = SimDevice.from_bundle(controller_dir.bundle(tmp_path / "b"), "sn-1")
    client.post("/api/v1/nodes/claim", json={"serial": "sn-1"}, headers=admin_headers)
    assert client.post("/api/v1/device/register", json=dev.register_body()).status_code == 201
    return dev


@pytest.fixture
def operator(controller_app):  # type: ignore[no-untyped-def]
    with controller_app.extensions["outpost"].db.transaction() as s:
        token = create_token(s, "op", "operator")
    return {"Authorization": f"Bearer {token}"}


def _revoke(client, headers, key="sn-1"):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/trust/nodes/{key}/revoke", json={"reason": "lost"}, headers=headers
    )


def test_revoking_needs_an_admin(client, operator, node):
    assert _revoke(client, operator).status_code == 403


def test_a_revoked_node_gets_403_on_every_signed_call(client, admin_headers, node):
    headers = node.attest_with(client)
    assert _revoke(client, admin_headers).json["state"] == "revoked"
    calls = {
        "attest": ({"request": "nonce"}, {}),
        "config": ({"config_hash": ""}, headers),
        "info": ({"agent_version": "t", "config_generation": 1}, {}),
    }
    for path, (body, extra) in calls.items():
        r = client.post(f"/api/v1/device/{path}", json=node.signed(body), headers=extra)
        assert (r.status_code, r.json["error"]["code"]) == (403, "revoked"), path


def test_a_revoked_node_cannot_register_again(client, admin_headers, node):
    _revoke(client, admin_headers)
    r = client.post("/api/v1/device/register", json=node.register_body())
    assert (r.status_code, r.json["error"]["code"]) == (403, "revoked")


def test_revoking_is_audited(client, admin_headers, node):
    _revoke(client, admin_headers)
    event = client.get("/api/v1/audit", headers=admin_headers).json["events"][0]
    assert (event["action"], event["target"]) == ("node.revoke", "sn-1")
    assert event["after"] == {"revoked": True, "reason": "lost"}


def test_revoking_a_node_that_never_registered_is_409(client, admin_headers):
    client.post("/api/v1/nodes/claim", json={"serial": "sn-9"}, headers=admin_headers)
    assert _revoke(client, admin_headers, "sn-9").status_code == 409


def _renew(client, signer, cert):  # type: ignore[no-untyped-def]
    body = {"device_cert_pem": pki.Identity(cert, signer.key).cert_pem()}
    return client.post("/api/v1/device/renew", json=envelope.seal(body, signer))


def test_a_renewed_cert_over_the_same_key_replaces_the_old_one(client, node):
    renewed = pki.make_device_cert("sn-1", node.device.key)
    r = _renew(client, node.device, renewed.cert)
    assert r.status_code == 200 and r.json["renewed"] is True
    info = {"agent_version": "t", "config_generation": 1}
    old = client.post("/api/v1/device/info", json=node.signed(info))
    assert (old.status_code, old.json["error"]["code"]) == (403, "unknown_signer")
    node.device = renewed
    assert _renew(client, renewed, renewed.cert).json["renewed"] is False  # idempotent


def test_a_renewed_cert_over_another_key_is_422(client, node):
    other = pki.make_device_cert("sn-1")
    r = _renew(client, node.device, other.cert)
    assert r.status_code == 422 and "keep the device key" in r.json["error"]["message"]


def test_a_renewed_cert_that_expires_earlier_is_422(client, node):
    shorter = pki.make_device_cert("sn-1", node.device.key, days=10)
    assert _renew(client, node.device, shorter.cert).status_code == 422


def test_a_renewed_cert_that_is_not_self_signed_is_422(client, node):
    now = dt.datetime.now(dt.UTC)
    issuer = pki.generate_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(node.device.cert.subject)
        .issuer_name(node.device.cert.subject)
        .public_key(node.device.key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=9000))
        .sign(issuer, hashes.SHA256())
    )
    assert _renew(client, node.device, cert).status_code == 422


def test_rotating_the_signing_cert_serves_and_uses_the_new_one(
    client, admin_headers, node, controller_dir
):
    before = client.get("/api/v1/device/certs").json["signing"]
    r = client.post("/api/v1/trust/rotate-signing", headers=admin_headers)
    assert r.status_code == 200
    after = client.get("/api/v1/device/certs").json["signing"]
    assert after != before
    new = pki.load_cert(after[0])
    root = pki.load_cert(client.get("/api/v1/device/certs").json["root"])
    pki.verify_chain(new, root, usage=ExtendedKeyUsageOID.CODE_SIGNING)
    config = client.post(
        "/api/v1/device/config",
        json=node.signed({"config_hash": ""}),
        headers=node.attest_with(client),
    ).json["config"]
    assert config["sender_cert_sha256"] == pki.cert_sha256(new)
    previous = controller_dir.data_dir / "pki" / f"signing-{r.json['previous_sha256'][:16]}.pem"
    assert previous.exists()
    assert pki.load_cert((controller_dir.data_dir / "pki" / "signing.pem").read_bytes()) == new


def test_rotating_the_signing_cert_needs_an_admin(client, operator):
    assert client.post("/api/v1/trust/rotate-signing", headers=operator).status_code == 403
