"""Hostile input to the device API: every answer a clean 4xx, nothing stored, before any
signature check where the body itself is bad (deep JSON, huge or non-finite numbers)."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from controller.app import create_app
from controller.cli import _settings
from controller.domain.users import create_user
from controller.store.models import LogBatch, MetricSample, Node
from tests.device_sim import SimDevice
from tests.fixtures.browser import PASSWORDS, UiClient
from tests.fixtures.controller_server import ControllerDir, free_port, init_controller

DEVICE_PATHS = ("register", "config", "info", "metrics", "logs", "attest", "renew")
DEEP = b"[" * 10_000 + b"]" * 10_000
METRICS = {
    "at": 1_700_000_000.0,
    "node": {
        "cpu_seconds_total": 1.0,
        "memory_used_bytes": 1,
        "memory_total_bytes": 2,
        "disk_used_bytes": 1,
        "disk_total_bytes": 2,
        "net_rx_bytes_total": 0,
        "net_tx_bytes_total": 0,
        "uptime_s": 5.0,
    },
}


@dataclass
class World:
    """One controller for the module: a registered node sn-1, a logged-in UI viewer."""

    client: Any
    admin_headers: dict[str, str]
    cdir: ControllerDir
    node: SimDevice
    viewer: UiClient


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("ctl")
    cdir = init_controller(base / "controller", free_port())
    app = create_app(_settings(cdir.data_dir))
    client, headers = app.test_client(), {"Authorization": f"Bearer {cdir.token}"}
    dev = SimDevice.from_bundle(cdir.bundle(base / "b"), "sn-1")
    client.post("/api/v1/nodes/claim", json={"serial": "sn-1"}, headers=headers)
    assert client.post("/api/v1/device/register", json=dev.register_body()).status_code == 201
    with app.extensions["outpost"].db.transaction() as s:
        create_user(s, "viewer1", "viewer", PASSWORDS["viewer"])
    viewer = UiClient(app)
    assert viewer.login("viewer1", PASSWORDS["viewer"]).status_code == 302
    return World(client, headers, cdir, dev, viewer)


@pytest.fixture
def client(world):  # type: ignore[no-untyped-def]
    return world.client


@pytest.fixture
def admin_headers(world):  # type: ignore[no-untyped-def]
    return world.admin_headers


@pytest.fixture
def node(world):  # type: ignore[no-untyped-def]
    return world.node


def _db(client):  # type: ignore[no-untyped-def]
    return client.application.extensions["outpost"].db


def test_json_nested_ten_thousand_deep_is_422_on_every_device_endpoint(client):
    for path in DEVICE_PATHS:
        r = client.post(f"/api/v1/device/{path}", data=DEEP, content_type="application/json")
        assert r.status_code == 422 and r.json["error"]["code"] == "too_deep", path


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x00\xff", "not_json"),
        (b"", "not_json"),
        (b'{"payload": NaN}', "bad_number"),
        (b'{"payload": 1e400}', "bad_number"),
        (b'{"payload": ' + b"9" * 40 + b"}", "bad_number"),
    ],
)
def test_a_device_body_that_is_not_strict_json_is_422(client, raw, code):
    r = client.post("/api/v1/device/info", data=raw, content_type="application/json")
    assert r.status_code == 422 and r.json["error"]["code"] == code


def test_a_device_body_over_the_limit_is_413(client):
    body = b'{"payload": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = client.post("/api/v1/device/info", data=body, content_type="application/json")
    assert r.status_code == 413


def test_a_log_line_with_a_timestamp_of_1e400_is_refused_and_nothing_stored(
    client, admin_headers, node
):
    lines = b'{"ts": 1e400, "msg": "overflow"}\n'
    body = {"source": "agent", "seq": 1, "lines_gz_b64": base64.b64encode(gzip.compress(lines))}
    body["lines_gz_b64"] = body["lines_gz_b64"].decode()  # type: ignore[union-attr]
    r = client.post("/api/v1/device/logs", json=node.signed(body))
    assert r.status_code == 422
    with _db(client).transaction() as s:
        assert s.scalars(select(LogBatch)).all() == []
    logs = client.get("/api/v1/nodes/sn-1/logs", headers=admin_headers)
    assert logs.status_code == 200 and json.loads(logs.data) == {"lines": []}


def test_a_deep_log_line_is_refused(client, node):
    lines = b'{"ts": 1, "msg": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"
    body = {"source": "agent", "seq": 1, "lines_gz_b64": base64.b64encode(gzip.compress(lines))}
    body["lines_gz_b64"] = body["lines_gz_b64"].decode()  # type: ignore[union-attr]
    assert client.post("/api/v1/device/logs", json=node.signed(body)).status_code == 422


def test_info_with_a_generation_past_2_to_the_53_is_refused_and_git_source_still_works(
    client, admin_headers, node, tmp_path
):
    info = {"agent_version": "t", "config_generation": 10**18}
    r = client.post("/api/v1/device/info", json=node.signed(info))
    assert r.status_code == 422 and "config_generation" in r.get_data(as_text=True)
    with _db(client).transaction() as s:
        assert not s.scalar(select(Node).where(Node.serial == "sn-1")).info
    repo = tmp_path / "repo"
    repo.mkdir()
    r = client.put("/api/v1/git/source", json={"url": str(repo)}, headers=admin_headers)
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("at", 1e300),
        ("at", -1.0),
        ("cpu_seconds_total", 1e300),
        ("memory_used_bytes", 2**60),
    ],
)
def test_metrics_out_of_range_are_refused_and_the_node_page_and_json_stay_valid(
    client, admin_headers, node, world, where, value
):
    msg = json.loads(json.dumps(METRICS))
    (msg if where == "at" else msg["node"])[where] = value
    with _db(client).transaction() as s:
        before = len(s.scalars(select(MetricSample)).all())
    r = client.post("/api/v1/device/metrics", json=node.signed(msg))
    assert r.status_code == 422
    with _db(client).transaction() as s:
        assert len(s.scalars(select(MetricSample)).all()) == before
    shown = client.get("/api/v1/nodes/sn-1", headers=admin_headers)
    assert shown.status_code == 200
    json.loads(shown.data, parse_constant=lambda c: pytest.fail(f"{c} in the answer"))
    assert world.viewer.get("/ui/nodes/sn-1").status_code == 200


def test_metrics_in_range_are_stored(client, node):
    assert client.post("/api/v1/device/metrics", json=node.signed(METRICS)).status_code == 200


def test_a_registration_inventory_of_the_wrong_type_is_refused(
    client, admin_headers, world, tmp_path
):
    dev = SimDevice.from_bundle(world.cdir.bundle(tmp_path / "b2"), "sn-2")
    client.post("/api/v1/nodes/claim", json={"serial": "sn-2"}, headers=admin_headers)
    r = client.post("/api/v1/device/register", json=dev.register_body(inventory={"cpus": "many"}))
    assert r.status_code == 422 and "cpus" in r.get_data(as_text=True)
    assert world.viewer.get("/ui/nodes/sn-2").status_code == 200
    r = client.post("/api/v1/device/register", json=dev.register_body())
    assert r.status_code == 201
