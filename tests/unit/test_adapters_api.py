"""The controller's PCI adapters: listed per node from its reported inventory; assigning one
that is missing, shared with another app, or in an incomplete IOMMU group is refused."""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from pathlib import Path

import pytest

from controller.store.models import Node
from node_agent.inventory import collect_inventory

SYSFS = Path(__file__).resolve().parents[1] / "data" / "sysfs"
API = "/api/v1"


def _register(controller_app, serial: str, tree: str | None, labels=None) -> None:  # type: ignore[no-untyped-def]
    inventory = collect_inventory(SYSFS / tree) if tree else {"cpus": 2}
    with controller_app.extensions["outpost"].db.transaction() as s:
        s.add(
            Node(
                serial=serial,
                uuid=str(uuidlib.uuid4()),
                state="registered",
                inventory=inventory,
                labels=labels or {},
            )
        )


@pytest.fixture
def api(api):  # type: ignore[no-untyped-def]
    call = api
    data = b"kernel bundle"
    sha = hashlib.sha256(data).hexdigest()
    assert (
        call("POST", f"/images?name=vm&format=kernel-bundle&sha256={sha}", data=data).status_code
        < 300
    )
    return call


def _app(api, name: str, *adapters: str, **extra):  # type: ignore[no-untyped-def]
    body = {
        "name": name,
        "kind": "vm",
        "image": "vm",
        "adapters": [{"kind": a.split()[0], "match": a.split()[1]} for a in adapters],
        **extra,
    }
    return api("POST", "/apps", json=body)


def test_a_nodes_adapters_are_listed_with_their_groups_and_bridges_left_out(api, controller_app):
    _register(controller_app, "gpu-1", "nvidia")
    out = api("GET", "/nodes/gpu-1/adapters").json
    assert out["reported"] and out["iommu"]
    by_address = {a["address"]: a for a in out["adapters"]}
    assert "0000:00:01.0" not in by_address  # the root port
    gpu = by_address["0000:01:00.0"]
    assert gpu["kind"] == "gpu" and gpu["assignable"] and gpu["iommu_group"] == 1
    assert gpu["functions"] == ["0000:01:00.0", "0000:01:00.1"]


def test_an_adapter_in_an_incomplete_group_is_listed_as_not_assignable(api, controller_app):
    _register(controller_app, "gpu-2", "nvidia-shared-group")
    gpu = next(
        a for a in api("GET", "/nodes/gpu-2/adapters").json["adapters"] if a["kind"] == "gpu"
    )
    assert not gpu["assignable"] and "0000:02:00.0" in gpu["reason"]


def test_the_listing_shows_which_app_uses_an_adapter(api, controller_app):
    _register(controller_app, "gpu-1", "nvidia")
    assert _app(api, "ml", "gpu 10de:1eb8").status_code == 201
    assert api("POST", "/nodes/gpu-1/apps", json={"app": "ml"}).status_code in (200, 201)
    by_address = {a["address"]: a for a in api("GET", "/nodes/gpu-1/adapters").json["adapters"]}
    assert by_address["0000:01:00.1"]["used_by"] == ["ml"]


def test_assigning_one_gpu_to_two_apps_on_a_node_is_refused(api, controller_app):
    _register(controller_app, "gpu-1", "nvidia")
    _app(api, "first", "gpu 0000:01:00.0")
    _app(api, "second", "gpu 10de:1eb8")
    assert api("POST", "/nodes/gpu-1/apps", json={"app": "first"}).status_code < 300
    r = api("POST", "/nodes/gpu-1/apps", json={"app": "second"})
    assert r.status_code == 409
    assert "already passed through to app 'first'" in r.json["error"]["message"]
    assert api("GET", "/nodes/gpu-1").json["assigned_apps"] == ["first"]


def test_an_audio_function_cannot_go_to_another_app_than_its_gpu(api, controller_app):
    _register(controller_app, "gpu-1", "nvidia")
    _app(api, "video", "gpu 0000:01:00.0")
    _app(api, "sound", "pci 0000:01:00.1")
    assert api("POST", "/nodes/gpu-1/apps", json={"app": "video"}).status_code < 300
    assert api("POST", "/nodes/gpu-1/apps", json={"app": "sound"}).status_code == 409


def test_assigning_a_gpu_whose_group_is_incomplete_is_refused(api, controller_app):
    _register(controller_app, "gpu-2", "nvidia-shared-group")
    _app(api, "ml", "gpu 0000:01:00.0")
    r = api("POST", "/nodes/gpu-2/apps", json={"app": "ml"})
    assert r.status_code == 409
    assert "as a whole" in r.json["error"]["message"]


def test_assigning_an_adapter_the_node_does_not_have_is_refused(api, controller_app):
    _register(controller_app, "igpu", "intel")
    _app(api, "ml", "gpu 10de:1eb8")
    r = api("POST", "/nodes/igpu/apps", json={"app": "ml"})
    assert r.status_code == 409 and "no PCI device" in r.json["error"]["message"]


def test_assigning_an_adapter_to_a_node_with_the_iommu_off_is_refused(api, controller_app):
    _register(controller_app, "no-iommu", "iommu-off")
    _app(api, "ml", "gpu 0000:01:00.0")
    r = api("POST", "/nodes/no-iommu/apps", json={"app": "ml"})
    assert r.status_code == 409 and "IOMMU is off" in r.json["error"]["message"]


def test_a_node_without_a_reported_pci_inventory_gets_no_adapters(api, controller_app):
    _register(controller_app, "old", None)
    _app(api, "ml", "gpu 8086:9a49")
    assert api("GET", "/nodes/old/adapters").json == {
        "node": "old",
        "reported": False,
        "iommu": False,
        "adapters": [],
    }
    r = api("POST", "/nodes/old/apps", json={"app": "ml"})
    assert r.status_code == 409 and "not reported its PCI inventory" in r.json["error"]["message"]


def test_changing_an_app_to_take_an_adapter_already_in_use_is_refused(api, controller_app):
    _register(controller_app, "gpu-1", "nvidia")
    _app(api, "first", "gpu 0000:01:00.0")
    _app(api, "second")
    assert api("POST", "/nodes/gpu-1/apps", json={"app": "first"}).status_code < 300
    assert api("POST", "/nodes/gpu-1/apps", json={"app": "second"}).status_code < 300
    body = {
        "name": "second",
        "kind": "vm",
        "image": "vm",
        "adapters": [{"kind": "gpu", "match": "0000:01:00.0"}],
    }
    r = api("PUT", "/apps/second", json=body)
    assert r.status_code == 409
    assert api("GET", "/apps/second").json.get("adapters", []) == []


def test_a_label_selector_landing_an_adapter_twice_on_a_node_is_refused(api, controller_app):
    _register(controller_app, "gpu-1", "nvidia", labels={"site": "a"})
    _app(api, "first", "gpu 0000:01:00.0")
    assert api("POST", "/nodes/gpu-1/apps", json={"app": "first"}).status_code < 300
    r = _app(api, "fleet", "gpu 10de:1eb8", selector={"site": "a"})
    assert r.status_code == 409
    assert api("GET", "/apps/fleet").status_code == 404


def test_the_intel_igpu_alone_in_its_group_can_be_assigned(api, controller_app):
    _register(controller_app, "igpu", "intel")
    _app(api, "ml", "gpu 8086:9a49")
    assert api("POST", "/nodes/igpu/apps", json={"app": "ml"}).status_code < 300


def _optional_gpu_app(api, name: str, match: str):  # type: ignore[no-untyped-def]
    body = {"name": name, "kind": "vm", "image": "vm"}
    body["adapters"] = [{"kind": "gpu", "match": match, "optional": True}]
    return api("POST", "/apps", json=body)


def test_an_optional_gpu_the_node_lacks_does_not_block_the_assignment(api, controller_app):
    _register(controller_app, "cpu-only", "intel")
    assert _optional_gpu_app(api, "infer", "10de:1eb8").status_code == 201
    assert api("POST", "/nodes/cpu-only/apps", json={"app": "infer"}).status_code < 300


def test_an_optional_gpu_on_a_node_without_inventory_is_assigned(api, controller_app):
    _register(controller_app, "old", None)
    assert _optional_gpu_app(api, "infer", "10de:1eb8").status_code == 201
    assert api("POST", "/nodes/old/apps", json={"app": "infer"}).status_code < 300


def test_an_optional_gpu_present_on_the_node_cannot_go_to_two_apps(api, controller_app):
    _register(controller_app, "gpu-1", "nvidia")
    _optional_gpu_app(api, "one", "10de:1eb8")
    _optional_gpu_app(api, "two", "10de:1eb8")
    assert api("POST", "/nodes/gpu-1/apps", json={"app": "one"}).status_code < 300
    r = api("POST", "/nodes/gpu-1/apps", json={"app": "two"})
    assert r.status_code == 409 and "already passed through" in r.json["error"]["message"]
