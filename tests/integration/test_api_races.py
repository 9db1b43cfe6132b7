"""Identical creates sent at the same moment to a real controller process answer one
success and 409s, never 500 (SQLite and PostgreSQL): the database's unique constraints
decide, and the loser changed nothing."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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


def _at_once(
    server: ControllerServer, method: str, path: str, body: dict[str, Any]
) -> Counter[int]:
    """``SENDERS`` threads send the same request when a barrier opens; the statuses."""
    barrier = threading.Barrier(SENDERS)
    statuses: list[int] = []

    def send() -> None:
        barrier.wait()
        statuses.append(server.api(method, path, json=body).status_code)

    threads = [threading.Thread(target=send) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return Counter(statuses)


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
