"""Rollouts in batches with success thresholds, disruption budgets per label group, health
probes in the gate, and what the rollout view says each node waits for (engine ticks with
an explicit clock; nodes' reports written as the device API stores them)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from controller.store.models import App, Node, RolloutNode
from tests.unit.test_rollout_engine import World

SITES = {f"n-{i}": ("a" if i <= 4 else "b") for i in range(1, 9)}
V1 = {"name": "svc", "kind": "container", "image": "bb", "selector": {"fleet": "yes"}}
V2 = {**V1, "env": {"VERSION": "2"}}


class Fleet(World):
    """The engine tests' world with eight nodes in two sites."""

    def poll(self, serial: str) -> dict[str, str]:
        """The node fetches its config (the generation moves on); its app's env."""
        return self.env_on(serial)

    def report(self, serial: str, state: str = "RUNNING", **app: Any) -> None:  # type: ignore[override]
        with self.services.db.transaction() as s:
            node = s.scalar(select(Node).where(Node.serial == serial))
            uuid = s.scalar(select(App.uuid).where(App.name == "svc"))
            node.info = {
                "agent_version": "0.1",
                "config_generation": node.config_generation,
                "apps": [{"uuid": uuid, "name": "svc", "state": state, **app}],
            }

    def phases(self) -> dict[str, str]:
        with self.services.db.transaction() as s:
            rows = s.execute(select(Node.serial, RolloutNode.phase).join(RolloutNode)).all()
            return dict(rows)

    def switched(self) -> list[str]:
        return sorted(s for s, p in self.phases().items() if p != "queued")

    def step(self, seconds: float = 1.0) -> None:
        """Every switched node polls and reports RUNNING; time moves on; the engine ticks."""
        for serial in self.switched():
            self.poll(serial)
            self.report(serial)
        self.tick(seconds)


@pytest.fixture
def fleet(controller_app, client, admin_headers) -> Fleet:  # type: ignore[no-untyped-def]
    f = Fleet(controller_app, client, admin_headers)
    image = {"name": "bb", "format": "oci-archive", "sha256": "a" * 64, "size": 1,
             "url": "https://d/x"}  # fmt: skip
    assert f.api("POST", "/images/register", json=image).status_code == 201
    assert f.api("POST", "/apps", json=V1).status_code == 201
    with f.services.db.transaction() as s:
        for i, (serial, site) in enumerate(SITES.items(), start=1):
            s.add(Node(serial=serial, uuid=f"00000000-0000-4000-8000-{i:012d}",
                       state="registered", labels={"fleet": "yes", "site": site}))  # fmt: skip
    for serial in SITES:
        f.poll(serial)
        f.report(serial)
    return f


def start(f: Fleet, version: dict[str, Any] = V2, **extra: Any) -> Any:
    ring = {"soak_s": 5, "deadline_s": 60, **extra.pop("ring", {})}
    body = {"app": version, "rings": [ring], **extra}
    r = f.api("POST", "/rollouts", json=body)
    assert r.status_code == 201, r.json
    return r.json


def test_a_ring_in_batches_switches_one_batch_at_a_time(fleet: Fleet):
    start(fleet, ring={"batches": {"percent": 25}})
    fleet.tick()
    assert fleet.switched() == ["n-1", "n-2"]
    assert fleet.rollout()["rings"][0]["batch_count"] == 4
    view = {n["serial"]: n for n in fleet.rollout()["rings"][0]["nodes"]}
    assert view["n-3"]["waiting"] == "batch 2: after batch 1 passes"
    for _ in range(6):
        fleet.step()
    assert fleet.switched() == ["n-1", "n-2", "n-3", "n-4"]
    for _ in range(40):
        fleet.step()
    assert fleet.rollout()["state"] == "succeeded"
    history = [h["what"] for h in fleet.rollout()["history"]]
    assert sum("batch" in h and "passed" in h for h in history) == 4


def test_a_budget_of_one_per_site_never_switches_two_nodes_of_a_site_at_once(fleet: Fleet):
    start(
        fleet, ring={"batches": {"count": 4}}, budgets=[{"group_by": ["site"], "max_updating": 1}]
    )
    seen = []
    for _ in range(80):
        fleet.tick()
        with fleet.services.db.transaction() as s:
            updating = s.execute(
                select(Node.labels, RolloutNode.phase).join(RolloutNode)
                .where(RolloutNode.phase == "switched")
            ).all()  # fmt: skip
        per_site: dict[str, int] = {}
        for labels, _ in updating:
            per_site[labels["site"]] = per_site.get(labels["site"], 0) + 1
        seen.append(max(per_site.values(), default=0))
        fleet.step()
        if fleet.rollout()["state"] != "progressing":
            break
    assert fleet.rollout()["state"] == "succeeded"
    assert max(seen) == 1
    view = fleet.rollout()
    assert view["budgets"] == [{"group_by": ["site"], "max_updating": 1, "min_healthy": None}]


def test_a_held_back_node_says_which_budget_holds_it(fleet: Fleet):
    start(fleet, budgets=[{"group_by": ["site"], "max_updating": 1}])
    fleet.tick()
    assert fleet.switched() == ["n-1", "n-5"]
    view = {n["serial"]: n for n in fleet.rollout()["rings"][0]["nodes"]}
    assert view["n-2"]["waiting"] == "budget site=a: 1 updating (at most 1)"
    assert view["n-6"]["waiting"] == "budget site=b: 1 updating (at most 1)"


def test_a_min_healthy_budget_keeps_enough_nodes_of_a_group_healthy(fleet: Fleet):
    start(fleet, budgets=[{"group_by": ["site"], "min_healthy": 2}])
    fleet.tick()
    assert fleet.switched() == ["n-1", "n-2", "n-5", "n-6"]
    view = {n["serial"]: n for n in fleet.rollout()["rings"][0]["nodes"]}
    assert view["n-3"]["waiting"] == "budget site=a: switching would leave 1 healthy (at least 2)"


def test_a_batch_below_its_success_threshold_rolls_back(fleet: Fleet):
    start(fleet, ring={"batches": {"count": 4, "success_threshold_pct": 75}})
    fleet.tick()
    for serial in ("n-1", "n-2", "n-3"):
        fleet.poll(serial)
        fleet.report(serial)
    fleet.poll("n-4")
    fleet.report("n-4", "ERROR", error="exit 1")
    fleet.tick(1)
    assert fleet.rollout()["state"] == "progressing"  # one failure of four is allowed
    for _ in range(6):
        fleet.step()
    assert fleet.switched()[4:] == ["n-5", "n-6", "n-7", "n-8"]
    fleet.poll("n-5")
    fleet.report("n-5", "CRASHLOOP", restarts=3)
    fleet.poll("n-6")
    fleet.report("n-6", "ERROR", error="bad")
    fleet.tick(1)
    r = fleet.rollout()
    assert r["state"] == "rolled_back"
    assert r["reason"].startswith("ring 1 batch 2 failed its health gate: 2 of 4 nodes failed")


PROBE = {"kind": "http", "port": 8080, "path": "/health", "interval_s": 1}


def test_a_probed_version_passes_only_once_its_probe_says_healthy(fleet: Fleet):
    with fleet.services.db.transaction() as s:
        from controller.store.models import Network

        s.add(Network(name="lan", subnet="10.9.0.0/24"))
    probed = {**V2, "networks": [{"name": "lan"}], "health": PROBE}
    start(fleet, probed, ring={"selector": {"site": "a"}, "soak_s": 2})
    fleet.tick()
    for serial in fleet.switched():
        fleet.poll(serial)
        fleet.report(serial, health={"status": "starting", "since": 1.0})
    fleet.tick(30)
    assert fleet.rollout()["state"] == "progressing"
    for serial in fleet.switched():
        fleet.report(serial, health={"status": "healthy", "since": 2.0})
    fleet.tick(1)
    fleet.tick(3)
    r = fleet.rollout()
    assert r["state"] == "succeeded", r
    assert r["history"][-2]["what"].endswith("4 of 4 node(s) healthy for 2 s")


def test_an_unhealthy_probe_fails_the_batch_with_the_probes_reason(fleet: Fleet):
    with fleet.services.db.transaction() as s:
        from controller.store.models import Network

        s.add(Network(name="lan", subnet="10.9.0.0/24"))
    probed = {**V2, "networks": [{"name": "lan"}], "health": PROBE}
    start(fleet, probed, ring={"selector": {"site": "a"}})
    fleet.tick()
    fleet.poll("n-1")
    fleet.report("n-1", health={"status": "unhealthy", "since": 2.0,
                                "last_failure": "GET /health answered HTTP 503"})  # fmt: skip
    fleet.tick(1)
    r = fleet.rollout()
    assert r["state"] == "rolled_back"
    assert r["reason"] == (
        "ring 1 failed its health gate: n-1: app is UNHEALTHY: health probe:"
        " GET /health answered HTTP 503"
    )


def test_budgets_and_batches_are_validated():
    from controller.rollouts.plan import BatchBody, BudgetBody

    for bad in ({}, {"count": 2, "percent": 10}, {"count": 0}, {"percent": 101}):
        with pytest.raises(ValueError):
            BatchBody.model_validate(bad)
    for bad in ({"group_by": ["site"]}, {"group_by": [], "max_updating": 1}):
        with pytest.raises(ValueError):
            BudgetBody.model_validate(bad)


def test_a_batch_that_can_no_longer_pass_fails_while_the_budget_still_holds_nodes_back(fleet):
    start(
        fleet, ring={"batches": {"count": 4}}, budgets=[{"group_by": ["site"], "max_updating": 1}]
    )
    fleet.tick()
    assert fleet.switched() == ["n-1"]  # n-1…n-4 are all of site a
    fleet.poll("n-1")
    fleet.report("n-1", "ERROR", error="exit 1")
    fleet.tick(1)
    r = fleet.rollout()
    assert r["state"] == "rolled_back" and "n-1: app is ERROR: exit 1" in r["reason"]


def test_a_failed_node_stops_counting_as_updating_once_decided(fleet: Fleet):
    start(fleet, ring={"batches": {"count": 4, "success_threshold_pct": 75}},
          budgets=[{"group_by": ["site"], "max_updating": 1}])  # fmt: skip
    fleet.tick()
    fleet.poll("n-1")
    fleet.report("n-1", "ERROR", error="exit 1")
    fleet.tick(1)
    assert fleet.phases()["n-1"] == "failed" and fleet.switched() == ["n-1", "n-2"]
