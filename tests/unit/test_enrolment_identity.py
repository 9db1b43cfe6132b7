"""Enrolment bound to the node's identity, on a controller with the production defaults
(unpinned claims refused; TPM-less nodes allowed here only because these simulated nodes
have no TPM — the TPM path runs on swtpm in tests/integration/test_enrolment_takeover.py).

The attacker holds a real onboarding key (it is on every node's disk) and registers the
serial of someone else's node with a device certificate of its own."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import select

from controller.cli import _settings
from controller.store.models import PendingRegistration
from tests.device_sim import SimDevice
from tests.fixtures.controller_server import free_port, init_controller

SERIAL = "sn-victim"


@pytest.fixture
def strict_dir(tmp_path, ek_ca):  # type: ignore[no-untyped-def]
    return init_controller(
        tmp_path / "controller",
        free_port(),
        ek_ca_bundle=ek_ca.bundle_path(),
        lenient=False,
        extra_args=["--tpm-less", "allow"],
    )


def _app(make_app, data_dir, **overrides: Any):  # type: ignore[no-untyped-def]
    return make_app(dataclasses.replace(_settings(data_dir), **overrides))


@pytest.fixture
def strict(strict_dir, make_app):  # type: ignore[no-untyped-def]
    return _app(make_app, strict_dir.data_dir).test_client()


@pytest.fixture
def admin(strict_dir) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {strict_dir.token}"}


@pytest.fixture
def genuine(strict_dir, tmp_path) -> SimDevice:  # type: ignore[no-untyped-def]
    return SimDevice.from_bundle(strict_dir.bundle(tmp_path / "bundle"), SERIAL)


@pytest.fixture
def attacker(genuine) -> SimDevice:  # type: ignore[no-untyped-def]
    return SimDevice(SERIAL, genuine.onboarding)  # the same onboarding key, its own device


def _register(client, device: SimDevice, source: str = "192.0.2.10"):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/device/register",
        json=device.register_body(),
        environ_base={"REMOTE_ADDR": source},
    )


def _audit(client, headers, action: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    events = client.get("/api/v1/audit?limit=200", headers=headers).json["events"]
    return [e for e in events if e["action"] == action]


def _node(client, headers) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return client.get(f"/api/v1/nodes/{SERIAL}", headers=headers).json


def test_a_claim_without_the_nodes_fingerprint_is_refused_by_default(strict, admin):
    r = strict.post("/api/v1/nodes/claim", json={"serial": SERIAL}, headers=admin)
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["field"] == "device_cert_sha256"
    assert strict.get("/api/v1/nodes", headers=admin).json["nodes"] == []


def test_a_claimed_serial_registers_only_the_pinned_device(strict, admin, genuine, attacker):
    claim = {"serial": SERIAL, "device_cert_sha256": genuine.device.sha256.upper()}
    assert strict.post("/api/v1/nodes/claim", json=claim, headers=admin).status_code == 201

    stolen = _register(strict, attacker)

    assert (stolen.status_code, stolen.json["error"]["code"]) == (403, "identity_mismatch")
    assert _node(strict, admin)["state"] == "claimed"
    (refusal,) = _audit(strict, admin, "node.register_refused")
    assert refusal["target"] == SERIAL
    assert refusal["detail"]["device_cert_sha256"] == attacker.device.sha256
    assert _register(strict, attacker).status_code == 403  # again: audited once an hour
    assert len(_audit(strict, admin, "node.register_refused")) == 1
    assert _register(strict, genuine).status_code == 201
    assert _node(strict, admin)["state"] == "registered"


def test_approving_a_pending_node_pins_the_identity_the_operator_was_shown(
    strict, admin, genuine, attacker
):
    assert _register(strict, genuine).json["error"]["code"] == "not_claimed"
    assert _register(strict, attacker, source="198.51.100.7").status_code == 403
    (pending,) = strict.get("/api/v1/pending", headers=admin).json["pending"]
    assert pending["device_cert_sha256"] == genuine.device.sha256  # not overwritten
    assert (pending["conflicts"], pending["source"]) == (1, "192.0.2.10")
    assert _audit(strict, admin, "pending.conflict")[0]["detail"]["device_cert_sha256"] == (
        attacker.device.sha256
    )
    approve = strict.post(f"/api/v1/pending/{SERIAL}/approve", headers=admin)
    assert approve.status_code == 200

    stolen = _register(strict, attacker)

    assert (stolen.status_code, stolen.json["error"]["code"]) == (403, "identity_mismatch")
    assert _register(strict, genuine).status_code == 201


def test_a_registered_serial_refuses_and_audits_another_device(strict, admin, genuine, attacker):
    claim = {"serial": SERIAL, "device_cert_sha256": genuine.device.sha256}
    strict.post("/api/v1/nodes/claim", json=claim, headers=admin)
    first = _register(strict, genuine)
    assert first.status_code == 201 and first.json["generation_floor"] == 0

    assert _register(strict, attacker).status_code == 409
    assert _register(strict, genuine).json["node_uuid"] == first.json["node_uuid"]
    assert _audit(strict, admin, "node.register_refused")[0]["detail"]["reason"] == "conflict"


def test_claiming_a_registered_serial_with_other_fingerprints_is_a_conflict(
    strict, admin, genuine, attacker
):
    claim = {"serial": SERIAL, "device_cert_sha256": genuine.device.sha256}
    strict.post("/api/v1/nodes/claim", json=claim, headers=admin)
    _register(strict, genuine)
    other = {"serial": SERIAL, "device_cert_sha256": attacker.device.sha256}
    assert strict.post("/api/v1/nodes/claim", json=other, headers=admin).status_code == 409
    assert strict.post("/api/v1/nodes/claim", json=claim, headers=admin).status_code == 200


def test_the_pending_table_is_bounded_per_source_and_per_batch(strict_dir, genuine, make_app):
    client = _app(
        make_app, strict_dir.data_dir, max_pending_per_source=2, max_pending_per_batch=3
    ).test_client()
    nodes = [SimDevice(f"sn-spray-{i}", genuine.onboarding) for i in range(5)]
    for node in nodes[:3]:  # one address: the third is not recorded
        assert _register(client, node, source="203.0.113.1").status_code == 403
    _register(client, nodes[3], source="203.0.113.2")  # another address: recorded
    _register(client, nodes[4], source="203.0.113.3")  # but the batch holds 3 already
    with client.application.extensions["outpost"].db.transaction() as s:
        kept = set(s.scalars(select(PendingRegistration.serial)))
    assert kept == {"sn-spray-0", "sn-spray-1", "sn-spray-3"}


def test_a_revoked_onboarding_batch_registers_nothing(strict_dir, strict, admin, tmp_path):
    old = SimDevice.from_bundle(strict_dir.bundle(tmp_path / "old", batch="2023"), "sn-old")
    new = SimDevice.from_bundle(strict_dir.bundle(tmp_path / "new", batch="2024"), "sn-new")
    for node in (old, new):
        claim = {"serial": node.serial, "device_cert_sha256": node.device.sha256}
        strict.post("/api/v1/nodes/claim", json=claim, headers=admin)
    batches = strict.get("/api/v1/onboarding/batches", headers=admin).json["batches"]
    assert [b["name"] for b in batches] == ["2023", "2024"]
    assert batches[0]["cert_sha256"] == old.onboarding.sha256

    r = strict.post(
        "/api/v1/onboarding/batches/2023/revoke", json={"reason": "leaked"}, headers=admin
    )

    assert r.status_code == 200 and r.json["batches"][0]["revoked"] is True
    refused = _register(strict, old)
    assert (refused.status_code, refused.json["error"]["code"]) == (403, "batch_revoked")
    assert _register(strict, new).status_code == 201
    assert _audit(strict, admin, "onboarding.revoke_batch")[0]["target"] == "2023"


def test_revoking_a_batch_needs_an_admin(strict_dir, strict, tmp_path):
    strict_dir.bundle(tmp_path / "b", batch="b1")
    from controller.domain.tokens import create_token

    with strict.application.extensions["outpost"].db.transaction() as s:
        token = create_token(s, "op", "operator")
    r = strict.post(
        "/api/v1/onboarding/batches/b1/revoke",
        json={"reason": "x"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 403


def test_an_unpinned_claim_where_allowed_is_first_registration_wins_and_audited(
    controller_dir, client, admin_headers, tmp_path
):
    device = SimDevice.from_bundle(controller_dir.bundle(tmp_path / "b"), SERIAL)
    r = client.post("/api/v1/nodes/claim", json={"serial": SERIAL}, headers=admin_headers)
    assert r.status_code == 201
    assert _register(client, device).status_code == 201
    (claimed,) = _audit(client, admin_headers, "node.claim")
    assert claimed["detail"]["mode"] == "first-registration-wins"
    (first,) = _audit(client, admin_headers, "node.first_registration")
    assert first["detail"]["device_cert_sha256"] == device.device.sha256


def test_a_node_without_a_tpm_is_refused_by_default(tmp_path, ek_ca, make_app):  # type: ignore[no-untyped-def]
    ctl = init_controller(
        tmp_path / "c", free_port(), ek_ca_bundle=ek_ca.bundle_path(), lenient=False
    )
    client = _app(make_app, ctl.data_dir).test_client()
    device = SimDevice.from_bundle(ctl.bundle(tmp_path / "b"), SERIAL)
    claim = {"serial": SERIAL, "device_cert_sha256": device.device.sha256}
    headers = {"Authorization": f"Bearer {ctl.token}"}
    client.post("/api/v1/nodes/claim", json=claim, headers=headers)
    r = _register(client, device)
    assert (r.status_code, r.json["error"]["code"]) == (403, "tpm_required")
    policy = client.get("/api/v1/trust/policy", headers=headers).json
    assert policy["tpm_less"] == "refuse"
