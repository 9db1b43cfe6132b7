"""End to end on the real components: claim → onboard → signed config → a VM and a
container running, through the public interfaces only (operator API, agent process),
checked independently with virsh and podman.

The tests in this module share one controller and one agent (booting VMs is the slow
part) and run in file order: running → agent restart → removal.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.fixtures.e2e import WAIT_S, E2ENode, e2e_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CONTAINER_CMD = ["sh", "-c", "echo hello-e2e; while true; do sleep 5; done"]
BOTH = {"c1": "RUNNING", "v1": "RUNNING"}


@pytest.fixture(scope="module")
def node(
    tmp_path_factory, built_images, podman_engine, libvirt_uri, hypervisor_accel
) -> Iterator[E2ENode]:  # type: ignore[no-untyped-def]
    with e2e_node(
        tmp_path_factory.mktemp("e2e"),
        "e2e-node-1",
        built_images,
        podman_engine,
        libvirt_uri,
        hypervisor_accel,
    ) as n:
        yield n


def test_a_claimed_node_onboards_and_runs_its_vm_and_container(node: E2ENode):
    api = node.api
    assert (
        api(
            "POST",
            "/apps",
            json={"name": "c1", "kind": "container", "image": "busybox", "command": CONTAINER_CMD},
        ).status_code
        == 201
    )
    assert (
        api(
            "POST",
            "/apps",
            json={"name": "v1", "kind": "vm", "image": "testvm", "resources": {"memory_mib": 96}},
        ).status_code
        == 201
    )
    for app in ("c1", "v1"):
        assert api("POST", f"/nodes/{node.serial}/apps", json={"app": app}).status_code == 201

    node.start_agent()
    node.wait_states(BOTH)

    assert node.node()["state"] == "registered"
    assert len(node.domains()) == 1  # `virsh list`: running domains only
    (container,) = node.containers()
    assert container["State"] == "running"
    assert container["Labels"]["outpost.name"] == "c1"


def test_the_vm_console_shows_the_guest_booted(node: E2ENode):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        logs = list(node.state_dir.glob("apps/*/console.log"))
        if any("OUTPOST-TESTVM-UP" in p.read_text(errors="replace") for p in logs):
            return
        time.sleep(1)
    pytest.fail("no VM console log shows the boot marker")


def test_an_agent_restart_neither_duplicates_nor_loses_the_apps(node: E2ENode):
    domains, containers = node.domains(), node.containers()
    node.stop_agent()
    assert node.domains() == domains  # apps keep running without the agent
    node.start_agent()
    node.wait_passes(3)  # a few reconcile passes of the new agent
    node.wait_states(BOTH)
    assert node.domains() == domains
    assert [c["Id"] for c in node.containers()] == [c["Id"] for c in containers]


def test_removing_the_container_app_removes_the_container(node: E2ENode):
    assert node.api("DELETE", f"/nodes/{node.serial}/apps/c1").status_code == 200
    node.wait_states({"v1": "RUNNING"})
    assert node.containers() == []
    assert len(node.domains()) == 1


def test_removing_the_vm_app_removes_the_domain(node: E2ENode):
    assert node.api("DELETE", f"/nodes/{node.serial}/apps/v1").status_code == 200
    node.wait_states({})
    assert node.domains("--all") == []
