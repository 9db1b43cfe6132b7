"""Identical creates sent at the same moment to a real controller process answer one
success and 409s, never 500 (SQLite and PostgreSQL): the database's unique constraints
decide, and the loser changed nothing.  Two devices registering one serial at once: one
binds it, the others are refused."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from controller.cli import _settings
from controller.store.database import Database
from controller.store.models import Node
from tests.device_sim import SimDevice
from tests.fixtures.controller_server import ControllerServer, running_controller

pytestmark = pytest.mark.integration

SENDERS = 6
ROUNDS = 4


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[ControllerServer]:
    with running_controller(tmp_path, db_url=db_url) as srv:
        image = {"name": "img", "format": "oci-archive", "sha256": "a" * 64, "size": 1}
        assert srv.api("POST", "/images/register", json=image | {"url": "https://x/i"}).ok
        yield srv


def _together(calls: list[Callable[[], int]]) -> list[int]:
    """Run each call in its own thread, all released by one barrier; their statuses."""
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = [0] * len(calls)

    def run(k: int) -> None:
        barrier.wait()
        statuses[k] = calls[k]()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


def _at_once(
    server: ControllerServer, method: str, path: str, body: dict[str, Any]
) -> Counter[int]:
    """``SENDERS`` threads send the same request at once; how many got each status."""
    return Counter(_together([lambda: server.api(method, path, json=body).status_code] * SENDERS))


CREATES: list[tuple[str, str, Callable[[int], dict[str, Any]]]] = [
    ("POST", "/nodes/claim", lambda i: {"serial": f"race-{i}"}),
    ("POST", "/networks", lambda i: {"name": f"race-{i}", "subnet": f"10.{50 + i}.0.0/24"}),
    ("POST", "/apps", lambda i: {"name": f"race-{i}", "kind": "container", "image": "img"}),
    (
        "POST",
        "/images/register",
        lambda i: {
            "name": f"race-{i}",
            "format": "raw",
            "sha256": "b" * 64,
            "size": 1,
            "url": "https://x/r",
        },
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), CREATES, ids=[c[1] for c in CREATES])
def test_identical_creates_at_once_answer_one_201_and_409s(server, method, path, body):
    """A claim is idempotent: one that comes after the winner's commit is 200."""
    again = {200} if path == "/nodes/claim" else set()
    for i in range(ROUNDS):
        statuses = _at_once(server, method, path, body(i))
        assert statuses[201] == 1 and set(statuses) <= {201, 409, *again}, statuses


def test_identical_assignments_at_once_answer_201_then_200_or_409(server):
    for i in range(ROUNDS):
        assert server.api("POST", "/nodes/claim", json={"serial": f"n-{i}"}).status_code == 201
        app = {"name": f"a-{i}", "kind": "container", "image": "img"}
        assert server.api("POST", "/apps", json=app).status_code == 201
        statuses = _at_once(server, "POST", f"/nodes/n-{i}/apps", {"app": f"a-{i}"})
        assert statuses[201] == 1 and set(statuses) <= {200, 201, 409}, statuses
        node = server.api("GET", f"/nodes/n-{i}").json()
        assert node["assigned_apps"] == [f"a-{i}"]


def _register(server: ControllerServer, body: dict[str, str]) -> Callable[[], int]:
    url, ca = f"{server.url}/api/v1/device/register", str(server.root_ca)
    return lambda: requests.post(url, json=body, verify=ca, timeout=60).status_code


def test_two_devices_registering_one_serial_at_once_bind_it_once(server, tmp_path):
    bundle = server.bundle(tmp_path / "bundle")
    for i in range(ROUNDS):
        serial = f"dev-{i}"
        assert server.api("POST", "/nodes/claim", json={"serial": serial}).status_code == 201
        devices = [SimDevice.from_bundle(bundle, serial) for _ in range(SENDERS)]
        bodies = [d.register_body() for d in devices]
        statuses = dict(enumerate(_together([_register(server, b) for b in bodies])))
        winners = [k for k, status in statuses.items() if status == 201]
        assert len(winners) == 1 and set(statuses.values()) <= {201, 409}, statuses
        node = server.api("GET", f"/nodes/{serial}").json()
        assert node["state"] == "registered"
        with Database(_settings(server.data_dir).database_url).transaction() as s:
            row = s.scalar(select(Node).where(Node.serial == serial))
            assert row.device_cert_sha256 == devices[winners[0]].device.sha256
