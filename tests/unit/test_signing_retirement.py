"""Rotation that retires keys, on the controller: ``certs`` offers only the current cert,
every node's config is re-signed by the new key although its content did not change,
another replica signs with the new key without a restart, and the old key file is
deleted by the background job once the grace period is over."""

from __future__ import annotations

import base64
import json
import time

import pytest

from attestation import pki
from controller.cli import _settings
from controller.trust.signing import retire_due_keys
from protocol.desired_state import DesiredState
from tests.device_sim import SimDevice
from tests.fixtures.controller_server import free_port, init_controller


@pytest.fixture
def ctl(tmp_path, ek_ca):  # type: ignore[no-untyped-def]
    return init_controller(
        tmp_path / "c",
        free_port(),
        ek_ca_bundle=ek_ca.bundle_path(),
        extra_args=["--signing-grace", "0"],
    )


def _client(make_app, ctl):  # type: ignore[no-untyped-def]
    return make_app(_settings(ctl.data_dir)).test_client()


@pytest.fixture
def node(ctl, tmp_path, make_app):  # type: ignore[no-untyped-def]
    client = _client(make_app, ctl)
    sim = SimDevice.from_bundle(ctl.bundle(tmp_path / "b"), "sn-1")
    headers = {"Authorization": f"Bearer {ctl.token}"}
    client.post("/api/v1/nodes/claim", json={"serial": "sn-1"}, headers=headers)
    client.post("/api/v1/device/register", json=sim.register_body())
    return client, sim, headers


def _config(client, sim, have: str = ""):  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/device/config",
        json=sim.signed({"config_hash": have}),
        headers=sim.attest_with(client),
    )
    assert r.status_code == 200, r.json
    return r.json


def test_a_rotation_re_signs_an_unchanged_config_with_the_new_key(node):
    client, sim, headers = node
    first = _config(client, sim)["config"]
    body = json.loads(base64.b64decode(first["payload"]))["body"]
    have = DesiredState.model_validate(body).content_hash()
    assert _config(client, sim, have) == {"unchanged": True, "config": None}

    rotated = client.post("/api/v1/trust/rotate-signing", headers=headers).json

    again = _config(client, sim, have)
    assert again["unchanged"] is False
    assert again["config"]["sender_cert_sha256"] == rotated["signing_sha256"]
    assert _config(client, sim, have)["unchanged"] is True  # once
    certs = client.get("/api/v1/device/certs").json["signing"]
    assert [pki.cert_sha256(pki.load_cert(c)) for c in certs] == [rotated["signing_sha256"]]


def test_another_replica_signs_with_the_new_key_without_a_restart(ctl, node, make_app):
    client, sim, headers = node
    replica = _client(make_app, ctl)  # a second process on the same data dir
    before = replica.get("/api/v1/device/certs").json["signing"]
    rotated = client.post("/api/v1/trust/rotate-signing", headers=headers).json
    deadline = time.monotonic() + 10
    while replica.get("/api/v1/device/certs").json["signing"] == before:
        assert time.monotonic() < deadline, "the replica never picked up the rotation"
        time.sleep(0.1)
    config = _config(replica, sim)["config"]
    assert config["sender_cert_sha256"] == rotated["signing_sha256"]


def test_the_old_key_is_deleted_after_the_grace_period(ctl, node):
    client, _sim, headers = node
    rotated = client.post("/api/v1/trust/rotate-signing", headers=headers).json
    old = ctl.data_dir / "pki" / f"signing-{rotated['previous_sha256'][:16]}.key"
    assert old.exists()

    done = retire_due_keys(client.application.extensions["outpost"])

    assert done == [rotated["previous_sha256"]] and not old.exists()
    assert retire_due_keys(client.application.extensions["outpost"]) == []
    events = client.get("/api/v1/audit", headers=headers).json["events"]
    assert events[0]["action"] == "pki.retire_signing"


def test_the_old_key_stays_during_the_grace_period(tmp_path, ek_ca, make_app):  # type: ignore[no-untyped-def]
    ctl = init_controller(tmp_path / "c", free_port(), ek_ca_bundle=ek_ca.bundle_path())
    client = _client(make_app, ctl)
    headers = {"Authorization": f"Bearer {ctl.token}"}
    rotated = client.post("/api/v1/trust/rotate-signing", headers=headers).json
    assert retire_due_keys(client.application.extensions["outpost"]) == []
    assert (ctl.data_dir / "pki" / f"signing-{rotated['previous_sha256'][:16]}.key").exists()
