"""The rollout state machine through the operator API and ``engine.tick`` (explicit clock),
with nodes' reports written as the device API would store them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from controller.domain.desired import current_desired_state
from controller.rollouts.engine import tick
from controller.store.models import App, AppPin, Node

SERIALS = ("n-1", "n-2", "n-3")
V1 = {"name": "svc", "kind": "container", "image": "bb", "selector": {"fleet": "yes"}}
V2 = {**V1, "env": {"VERSION": "2"}}


class World:
    def __init__(self, app, client, headers) -> None:  # type: ignore[no-untyped-def]
        self.app, self.client, self.headers = app, client, headers
        self.services = app.extensions["outpost"]
        self.now = 1000.0

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.open(f"/api/v1{path}", method=method, headers=self.headers, **kwargs)

    def tick(self, advance: float = 0.0) -> None:
        self.now += advance
        with self.app.app_context():
            tick(self.services, now=self.now)

    def env_on(self, serial: str) -> dict[str, str]:
        with self.app.app_context(), self.services.db.transaction() as s:
            node = s.scalar(select(Node).where(Node.serial == serial))
            (spec,) = current_desired_state(s, node, "https://c").apps
            return dict(spec.env)

    def report(self, serial: str, state: str, error: str = "") -> None:
        """The node runs its newest generation; the app is in ``state``."""
        with self.services.db.transaction() as s:
            node = s.scalar(select(Node).where(Node.serial == serial))
            app = s.scalar(select(App).where(App.name == "svc"))
            node.info = {
                "agent_version": "0.1",
                "config_generation": node.config_generation,
                "apps": [{"uuid": app.uuid, "name": "svc", "state": state, "error": error}],
            }

    def report_all(self, state: str = "RUNNING") -> None:
        for serial in SERIALS:
            self.report(serial, state)

    def rollout(self, rid: int = 1) -> dict[str, Any]:
        return self.api("GET", f"/rollouts/{rid}").json

    def pins(self) -> int:
        with self.services.db.transaction() as s:
            return len(s.scalars(select(AppPin)).all())


@pytest.fixture
def world(controller_app, client, admin_headers) -> World:  # type: ignore[no-untyped-def]
    w = World(controller_app, client, admin_headers)
    image = {
        "name": "bb",
        "format": "oci-archive",
        "sha256": "a" * 64,
        "size": 1,
        "url": "https://d/x",
    }
    assert w.api("POST", "/images/register", json=image).status_code == 201
    assert w.api("POST", "/apps", json=V1).status_code == 201
    with w.services.db.transaction() as s:
        for i, serial in enumerate(SERIALS, start=1):
            s.add(
                Node(
                    serial=serial,
                    uuid=f"00000000-0000-4000-8000-00000000000{i}",
                    state="registered",
                    labels={"fleet": "yes", "ring": str(i)},
                )
            )
    for serial in SERIALS:
        w.env_on(serial)  # the nodes polled once: generation 1 with v1
    w.report_all()
    return w


def start(world: World, *rings: dict[str, Any], version: dict[str, Any] = V2) -> Any:
    rings = rings or tuple(
        {"name": f"r{i}", "selector": {"ring": str(i)}, "soak_s": 10, "deadline_s": 60}
        for i in (1, 2, 3)
    )
    return world.api("POST", "/rollouts", json={"app": version, "rings": list(rings)})


def test_starting_pins_the_new_version_on_ring_one_only(world: World):
    assert start(world).status_code == 201
    world.tick()
    assert world.env_on("n-1") == {"VERSION": "2"}
    assert world.env_on("n-2") == {} and world.env_on("n-3") == {}
    assert world.api("GET", "/apps/svc").json["env"] == {}  # the definition is still v1


def test_a_healthy_ring_passes_after_the_window_and_the_next_one_starts(world: World):
    start(world)
    world.tick()
    world.report("n-1", "RUNNING")
    world.tick(1)
    world.tick(9)
    assert world.rollout()["ring"] == 0
    world.tick(1)
    r = world.rollout()
    assert r["rings"][0]["status"] == "passed" and r["ring"] == 1
    world.tick()
    assert world.env_on("n-2") == {"VERSION": "2"} and world.env_on("n-3") == {}


def test_all_rings_passing_make_the_new_version_the_definition(world: World):
    start(world)
    for _ in range(3):
        world.tick()
        world.report_all()
        world.tick(1)
        world.tick(11)
    assert world.rollout()["state"] == "succeeded"
    assert world.api("GET", "/apps/svc").json["env"] == {"VERSION": "2"}
    assert world.pins() == 0
    assert all(world.env_on(s) == {"VERSION": "2"} for s in SERIALS)


def test_a_failing_gate_rolls_back_and_leaves_later_rings_untouched(world: World):
    start(world)
    world.tick()
    world.report("n-1", "ERROR", "exit status 1")
    world.tick(1)
    r = world.rollout()
    assert r["state"] == "rolled_back"
    assert r["reason"] == "ring r1 failed its health gate: n-1: app is ERROR: exit status 1"
    assert [ring["status"] for ring in r["rings"]] == ["failed", "waiting", "waiting"]
    assert world.pins() == 0 and world.env_on("n-1") == {}
    world.tick(100)
    assert world.env_on("n-2") == {} and world.rollout()["rings"][1]["nodes"] == []


def test_a_ring_not_healthy_by_its_deadline_is_rolled_back(world: World):
    start(world)
    world.tick()
    world.report("n-1", "BOOTING")
    world.tick(59)
    assert world.rollout()["state"] == "progressing"
    world.tick(1)
    assert "not RUNNING for 10 s within 60 s" in world.rollout()["reason"]


def test_an_approval_gate_waits_until_an_operator_approves(world: World):
    start(world, {"selector": {"ring": "1"}, "approval": True, "soak_s": 0, "deadline_s": 9})
    world.tick()
    world.tick(100)
    assert world.rollout()["state"] == "awaiting_approval" and world.pins() == 0
    assert world.api("POST", "/rollouts/1/approve", json={}).status_code == 200
    world.tick()
    assert world.env_on("n-1") == {"VERSION": "2"}
    audit = world.api("GET", "/audit?action=rollout.approve").json["events"]
    assert [(e["actor"], e["detail"]) for e in audit] == [
        ("token:admin", {"rollout": 1, "ring": 0})
    ]


def test_a_paused_rollout_does_not_advance_and_resumes_with_a_fresh_window(world: World):
    start(world)
    world.tick()
    world.report("n-1", "RUNNING")
    world.tick(1)
    assert world.api("POST", "/rollouts/1/pause").json["state"] == "paused"
    world.tick(30)
    assert world.rollout()["ring"] == 0
    assert world.api("POST", "/rollouts/1/resume").json["state"] == "progressing"
    world.tick()
    assert world.rollout()["ring"] == 0  # the window started over at resume
    world.tick(11)
    assert world.rollout()["ring"] == 1


def test_an_operator_rollback_returns_every_node_to_the_previous_version(world: World):
    start(world)
    world.tick()
    assert world.api("POST", "/rollouts/1/rollback").json["state"] == "rolled_back"
    assert world.env_on("n-1") == {} and world.pins() == 0


def test_an_app_being_rolled_out_changes_only_through_its_rollout(world: World):
    start(world)
    assert start(world).status_code == 409
    r = world.api("PUT", "/apps/svc", json={**V1, "env": {"X": "y"}})
    assert r.status_code == 409 and r.json["error"]["code"] == "rollout_in_progress"


@pytest.mark.parametrize(
    ("version", "field"),
    [
        (V1, "app"),
        ({**V2, "image": "nope"}, "image"),
        ({**V2, "selector": {"fleet": "no"}}, "app.selector"),
    ],
)
def test_a_rollout_that_conflicts_with_the_stored_app_is_409(world: World, version, field):
    r = start(world, version=version)
    assert r.status_code == 409 and r.json["error"]["details"][0]["field"] == field


def test_a_rollout_with_no_rings_is_refused(world: World):
    r = world.api("POST", "/rollouts", json={"app": V2, "rings": []})
    assert r.status_code == 422
