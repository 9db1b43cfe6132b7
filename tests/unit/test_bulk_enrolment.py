"""Bulk enrolment (``POST /api/v1/nodes/import``): a manufacturing manifest of serials and
device certificates registers every node or none, and an imported node asks for its
config with its device certificate without registering first."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from attestation import pki
from controller.domain.tokens import create_token
from tests.device_sim import SimDevice

CSV = {"Content-Type": "text/csv"}


def _cell(identity: pki.Identity, pem: bool = False) -> str:
    if pem:
        return '"' + identity.cert_pem() + '"'
    return base64.b64encode(identity.cert.public_bytes(Encoding.DER)).decode()


def _manifest(rows: list[tuple[str, pki.Identity]], pem: bool = False) -> str:
    return "serial,device_cert\n" + "".join(f"{s},{_cell(d, pem)}\n" for s, d in rows)


def _import(client: Any, headers: dict[str, str], text: str, **kw: Any) -> Any:
    return client.post("/api/v1/nodes/import", data=text.encode(), headers={**headers, **CSV, **kw})


def _nodes(client: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    return client.get("/api/v1/nodes", headers=headers).json["nodes"]


@pytest.fixture
def devices() -> list[tuple[str, pki.Identity]]:
    return [(f"mfg-{i:03d}", pki.make_device_cert(f"mfg-{i:03d}")) for i in range(5)]


def test_importing_a_manifest_registers_every_node_with_a_uuid(client, admin_headers, devices):
    r = _import(client, admin_headers, _manifest(devices))
    assert r.status_code == 200, r.json
    assert (r.json["created"], r.json["unchanged"]) == (5, 0)
    nodes = {n["serial"]: n for n in _nodes(client, admin_headers)}
    assert {s for s, _ in devices} == set(nodes)
    assert all(n["state"] == "registered" and n["uuid"] for n in nodes.values())


def test_an_imported_node_attests_and_gets_its_config_without_registering(
    client, admin_headers, devices
):
    serial, device = devices[0]
    uuid = _import(client, admin_headers, _manifest([devices[0]])).json["nodes"][0]["uuid"]
    node = SimDevice(serial, device, device)  # its onboarding key is never used
    token = node.attest_with(client)
    r = client.post("/api/v1/device/config", json=node.signed({"config_hash": ""}), headers=token)
    assert r.status_code == 200 and r.json["unchanged"] is False
    payload = json.loads(base64.b64decode(r.json["config"]["payload"]))
    assert payload["body"]["node_uuid"] == uuid


def test_a_manifest_with_one_bad_row_changes_nothing_and_names_the_line(
    client, admin_headers, devices
):
    text = _manifest(devices) + "mfg-bad,bm90IGEgY2VydGlmaWNhdGU=\n"
    r = _import(client, admin_headers, text)
    assert r.status_code == 422 and r.json["error"]["code"] == "bad_manifest"
    assert r.json["error"]["details"][0]["line"] == 7
    assert "device certificate" in r.json["error"]["details"][0]["error"]
    assert _nodes(client, admin_headers) == []


def test_a_serial_listed_twice_is_refused(client, admin_headers, devices):
    twice = [devices[0], (devices[0][0], devices[1][1])]
    r = _import(client, admin_headers, _manifest(twice))
    assert r.status_code == 422 and "also on line 2" in r.json["error"]["message"]
    assert _nodes(client, admin_headers) == []


def test_importing_the_same_manifest_again_changes_nothing(client, admin_headers, devices):
    first = _import(client, admin_headers, _manifest(devices, pem=True))
    again = _import(client, admin_headers, _manifest(devices))
    assert again.status_code == 200
    assert (again.json["created"], again.json["unchanged"]) == (0, 5)
    assert {n["serial"]: n["uuid"] for n in _nodes(client, admin_headers)} == {
        n["serial"]: n["uuid"] for n in first.json["nodes"]
    }


def test_a_row_contradicting_a_registered_node_is_a_conflict_and_nothing_is_imported(
    client, admin_headers, devices
):
    _import(client, admin_headers, _manifest(devices[:1]))
    other = [(devices[0][0], pki.make_device_cert("other")), *devices[1:]]
    r = _import(client, admin_headers, _manifest(other))
    assert r.status_code == 409
    assert r.json["error"]["details"][0]["serial"] == devices[0][0]
    assert [n["serial"] for n in _nodes(client, admin_headers)] == [devices[0][0]]


def test_a_claimed_serial_is_registered_in_place(client, admin_headers, devices):
    serial, device = devices[0]
    pin = pki.cert_sha256(device.cert)
    client.post(
        "/api/v1/nodes/claim",
        json={"serial": serial, "device_cert_sha256": pin},
        headers=admin_headers,
    )
    r = _import(client, admin_headers, _manifest(devices[:1]))
    assert r.json["registered_claims"] == 1
    (node,) = _nodes(client, admin_headers)
    assert node["state"] == "registered"


def test_rows_without_an_ek_are_refused_when_the_policy_refuses_tpm_less_nodes(
    client, admin_headers, devices
):
    client.patch("/api/v1/trust/policy", json={"tpm_less": "refuse"}, headers=admin_headers)
    r = _import(client, admin_headers, _manifest(devices))
    assert r.status_code == 422
    assert "TPM-less" in r.json["error"]["details"][0]["error"]
    assert _nodes(client, admin_headers) == []


def test_an_ek_certificate_outside_the_bundle_is_refused(client, admin_headers, devices):
    serial, device = devices[0]
    text = f"serial,device_cert,ek_cert\n{serial},{_cell(device)},{_cell(device)}\n"
    r = _import(client, admin_headers, text)
    assert r.status_code == 422 and "EK" in r.json["error"]["details"][0]["error"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("serial,device_cert\n", "text/csv", 422),  # no rows
        ("name,cert\nx,y\n", "text/csv", 422),  # not the header
        ('serial,device_cert\n"unterminated\n', "text/csv", 422),
        ("serial,device_cert\nx\n", "text/csv", 422),  # one field
        ("\xff\xfe", "text/csv", 422),
        ("{}", "application/json", 415),
    ],
)
def test_malformed_manifests_get_a_clear_4xx(client, admin_headers, body, content_type, status):
    r = client.post(
        "/api/v1/nodes/import",
        data=body.encode("latin-1"),
        headers={**admin_headers, "Content-Type": content_type},
    )
    assert r.status_code == status, r.json
    assert r.json["error"]["message"]


def test_only_an_admin_imports(client, admin_headers, devices):
    with client.application.extensions["outpost"].db.transaction() as s:
        token = create_token(s, "op", "operator")
    r = _import(client, {"Authorization": f"Bearer {token}"}, _manifest(devices))
    assert r.status_code == 403
    assert _nodes(client, admin_headers) == []
