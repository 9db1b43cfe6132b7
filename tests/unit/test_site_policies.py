"""Site policies (download caps shared per group, download and switch windows, a nearer
datastore) and device-reported labels, as the nodes' desired states and the rollout
engine see them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from controller.domain.desired import current_desired_state
from controller.rollouts.service import find_rollout, rollout_json
from controller.store.models import Node
from tests.unit.test_rollout_batches_budgets import V2, Fleet, start
from tests.unit.test_rollout_batches_budgets import fleet as fleet

NIGHT = {"cron": "0 1 * * *", "time_zone": "UTC", "grace_s": 3600}
EARLY = {"cron": "0 3 * * *", "time_zone": "UTC", "grace_s": 3600}


def put(f: Fleet, policy: str, **body: Any) -> Any:
    """Create the policy, or replace it when it exists."""
    r = f.api("PUT", f"/site-policies/{policy}", json=body)
    return (
        f.api("POST", "/site-policies", json={"name": policy, **body})
        if r.status_code == 404
        else r
    )


def doc(f: Fleet, serial: str) -> Any:
    with f.services.db.transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == serial))
        return current_desired_state(s, node, "https://c")


def view(f: Fleet) -> dict[str, Any]:
    """The rollout view as of the fleet's clock (the API reads the real one)."""
    with f.services.db.transaction() as s:
        return rollout_json(s, find_rollout(s, 1), now=f.now)


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def test_each_node_gets_an_equal_share_of_its_groups_download_cap(fleet: Fleet):
    assert put(fleet, "shops", download_rate_bps=4_000_000).status_code == 201
    a, b = doc(fleet, "n-1"), doc(fleet, "n-5")
    assert a.settings.downloads.rate_bps == 1_000_000  # 4 nodes of site a
    assert b.settings.downloads.rate_bps == 1_000_000
    assert put(fleet, "shops", download_rate_bps=4_000_000, group_by=[]).status_code == 200
    assert doc(fleet, "n-1").settings.downloads.rate_bps == 500_000  # one group of 8


def test_the_higher_priority_policy_wins_field_by_field(fleet: Fleet):
    put(fleet, "all", download_rate_bps=8_000_000, download_window=NIGHT)
    put(fleet, "site-b", priority=10, selector={"site": "b"}, download_window=EARLY,
        image_base_url="http://cache.b:8080/store")  # fmt: skip
    b = doc(fleet, "n-5")
    assert b.settings.downloads.window.cron == "0 3 * * *"
    assert b.settings.downloads.rate_bps == 2_000_000  # the rate still comes from "all"
    assert b.apps[0].image.url == f"http://cache.b:8080/store/sha256/{'a' * 64}"
    a = doc(fleet, "n-1")
    assert a.settings.downloads.window.cron == "0 1 * * *"
    assert a.apps[0].image.url == "https://d/x"
    listed = fleet.api("GET", "/site-policies").json["policies"]
    assert [p["name"] for p in listed] == ["site-b", "all"]


def test_a_node_without_a_policy_gets_a_config_without_download_settings(fleet: Fleet):
    before = doc(fleet, "n-1")
    assert "downloads" not in before.settings.model_dump(mode="json")
    put(fleet, "b-only", selector={"site": "b"}, download_rate_bps=10_000)
    assert doc(fleet, "n-1").content_hash() == before.content_hash()


@pytest.mark.parametrize(
    "body",
    [
        {"download_rate_bps": 10},
        {"download_window": {"cron": "0 25 * * *"}},
        {"switch_window": {"cron": "0 1 * * *", "time_zone": "Nowhere/Else"}},
        {"image_base_url": "ftp://cache"},
        {"selector": {"Bad Key": "x"}},
        {"name": "Not A Name"},
    ],
)
def test_a_bad_policy_is_refused_and_changes_nothing(fleet: Fleet, body: dict[str, Any]):
    r = put(fleet, "p", **body)
    assert r.status_code == 422, r.json
    assert fleet.api("GET", "/site-policies").json["policies"] == []


def test_policies_are_created_once_replaced_audited_and_deleted(fleet: Fleet):
    assert put(fleet, "p", download_rate_bps=10_000).status_code == 201
    again = fleet.api("POST", "/site-policies", json={"name": "p"})
    assert again.status_code == 409
    assert fleet.api("PUT", "/site-policies/q", json={}).status_code == 404
    assert put(fleet, "p", download_rate_bps=20_000).status_code == 200
    assert fleet.api("DELETE", "/site-policies/p").status_code == 200
    assert fleet.api("DELETE", "/site-policies/p").status_code == 404
    actions = [e["action"] for e in fleet.api("GET", "/audit").json["events"]]
    assert {"site_policy.create", "site_policy.update", "site_policy.delete"} <= set(actions)


def test_queued_nodes_prefetch_the_new_image_and_switch_only_once_it_is_there(fleet: Fleet):
    fleet.api("POST", "/images/register", json={"name": "bb2", "format": "oci-archive",
              "sha256": "b" * 64, "size": 8_000_000, "url": "https://d/y"})  # fmt: skip
    put(fleet, "capped", download_rate_bps=4_000_000)
    start(fleet, {**V2, "image": "bb2"}, ring={"selector": {"site": "a"}})
    fleet.tick()
    assert fleet.switched() == []
    assert [r.sha256 for r in doc(fleet, "n-1").prefetch] == ["b" * 64]
    assert doc(fleet, "n-5").prefetch == []
    nodes = {n["serial"]: n for n in view(fleet)["rings"][0]["nodes"]}
    assert nodes["n-1"]["waiting"].startswith("pre-fetching the new image: 0 %")
    assert nodes["n-1"]["download"]["share_bps"] == 1_000_000
    # 8 MB at 1 MB/s each, then the switch and the soak: about 8 + 5 + 5 s from now
    eta = view(fleet)["expected_completion"]
    assert eta == pytest.approx(fleet.now + 8 + 5 + 5, abs=1)
    _prefetched(fleet, "n-1", "b" * 64)
    fleet.tick(1)
    assert fleet.switched() == ["n-1"]
    assert doc(fleet, "n-1").prefetch == []  # switched: pinned, no longer pre-fetched


def _prefetched(f: Fleet, serial: str, sha: str) -> None:
    with f.services.db.transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == serial))
        node.info = {**node.info, "prefetch": [{"sha256": sha, "state": "done",
                                                "done_bytes": 8_000_000,
                                                "total_bytes": 8_000_000}]}  # fmt: skip


def test_no_switch_outside_the_switch_window_and_the_view_says_when_it_opens(fleet: Fleet):
    put(fleet, "nights", switch_window=EARLY)
    fleet.now = utc("2026-03-10 12:00")
    start(fleet, ring={"selector": {"site": "a"}})
    fleet.tick()
    assert fleet.switched() == []
    ours = view(fleet)
    waits = {n["serial"]: n["waiting"] for n in ours["rings"][0]["nodes"]}
    assert waits["n-1"] == (
        "waiting for its switch window 0 3 * * * (UTC, 60 min): opens 2026-03-11 03:00:00 UTC"
    )
    assert ours["rings"][0]["nodes"][0]["phase"] == "queued"
    assert ours["expected_completion"] == pytest.approx(utc("2026-03-11 03:00") + 10, abs=1)
    fleet.tick(utc("2026-03-11 03:00") - fleet.now)
    assert fleet.switched() == ["n-1", "n-2", "n-3", "n-4"]


def test_device_labels_are_kept_apart_and_selected_as_device_keys(fleet: Fleet):
    with fleet.services.db.transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == "n-1"))
        node.device_labels = {"gpu": "present", "site": "z"}
    gpu_app = {"name": "infer", "kind": "container", "image": "bb",
               "selector": {"device/gpu": "present"}}  # fmt: skip
    assert fleet.api("POST", "/apps", json=gpu_app).status_code == 201
    assert [a.name for a in doc(fleet, "n-1").apps] == ["infer", "svc"]
    assert [a.name for a in doc(fleet, "n-2").apps] == ["svc"]
    shown = fleet.api("GET", "/nodes/n-1").json
    assert shown["labels"]["site"] == "a" and shown["device_labels"]["site"] == "z"
    found = fleet.api("GET", "/nodes?label=device/gpu=present").json["nodes"]
    assert [n["serial"] for n in found] == ["n-1"]
    r = fleet.api("PATCH", "/nodes/n-2", json={"labels": {"device/gpu": "present"}})
    assert r.status_code == 422 and "device/" in r.json["error"]["details"][0]["error"]
