"""End to end on the real components: claim → onboard → signed config → a VM and a
container running, through the public interfaces only (operator API, agent process),
checked independently with virsh and podman.

The tests in this module share one controller and one agent (booting VMs is the slow
part) and run in file order: running → agent restart → removal.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.fixtures.controller_server import ControllerServer, running_controller
from tests.fixtures.libvirt_daemon import cleanup_node_domains

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERIAL = "e2e-node-1"
WAIT_S = 240.0
CONTAINER_CMD = ["sh", "-c", "echo hello-e2e; while true; do sleep 5; done"]


@dataclass
class Node:
    controller: ControllerServer
    state_dir: Path
    settings: Path
    env: dict[str, str]
    log: Path
    libvirt_uri: str
    podman: object
    agent: subprocess.Popen[bytes] | None = None

    def start_agent(self) -> None:
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "node_agent.cli", "--config", str(self.settings), "run"],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env=self.env,
        )

    def stop_agent(self) -> None:
        assert self.agent is not None
        self.agent.send_signal(signal.SIGTERM)
        self.agent.wait(60)
        self.agent = None

    def node(self) -> dict:  # type: ignore[type-arg]
        r = self.controller.api("GET", f"/nodes/{SERIAL}")
        r.raise_for_status()
        return r.json()

    def states(self) -> dict[str, str]:
        return {a["name"]: a["state"] for a in (self.node().get("info") or {}).get("apps", [])}

    def wait_for(self, what: str, predicate) -> dict[str, str]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + WAIT_S
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            assert self.agent is None or self.agent.poll() is None, self.log.read_text()[-3000:]
            states = self.states()
            if predicate(states):
                return states
            time.sleep(0.5)
        pytest.fail(
            f"timed out waiting for {what}; states {states}\n{self.log.read_text()[-3000:]}"
        )

    def domains(self, *flags: str) -> list[str]:
        out = subprocess.run(
            ["virsh", "-c", self.libvirt_uri, "list", "--name", *flags],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        uuid = self.node()["uuid"]
        return [n for n in out.split() if n.startswith(f"outpost-{uuid[:8]}-")]

    def containers(self) -> list[dict]:  # type: ignore[type-arg]
        return self.podman.ps(self.node()["uuid"])  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory,
    built_images,
    podman_engine,
    libvirt_uri,
    hypervisor_accel,
) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("e2e")
    # the VM's kernel lives in the state dir: QEMU (user libvirt-qemu) must traverse it
    state_dir = Path(tempfile.mkdtemp(prefix="outpost-e2e-", dir="/tmp"))
    state_dir.chmod(0o755)
    with running_controller(base) as ctl:
        bundle = ctl.bundle(base / "bundle")
        settings = base / "agent.yaml"
        settings.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(state_dir),
                    "bundle_dir": str(bundle),
                    "serial": SERIAL,
                    "libvirt_uri": libvirt_uri,
                    "hypervisor": hypervisor_accel,
                    "podman_global_args": list(podman_engine.global_args),
                    "config_interval_s": 1.0,
                    "reconcile_interval_s": 1.0,
                }
            )
        )
        n = Node(
            ctl,
            state_dir,
            settings,
            {**os.environ, **podman_engine.env},
            base / "agent.log",
            libvirt_uri,
            podman_engine,
        )
        try:
            yield n
        finally:
            if n.agent is not None and n.agent.poll() is None:
                n.agent.kill()
                n.agent.wait(10)
            uuid = n.node()["uuid"]
            if uuid:
                cleanup_node_domains(libvirt_uri, uuid)
                podman_engine.remove_node(uuid)
            shutil.rmtree(state_dir, ignore_errors=True)


def test_a_claimed_node_onboards_and_runs_its_vm_and_container(node: Node, built_images):
    api = node.controller.api
    for img in built_images.images:
        with img.path.open("rb") as fh:
            r = api(
                "POST",
                "/images",
                params={"name": img.name, "format": img.format, "sha256": img.sha256},
                data=fh,
            )
        assert r.status_code == 201, r.text
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
    assert api("POST", "/nodes/claim", json={"serial": SERIAL}).status_code == 201
    for app in ("c1", "v1"):
        assert api("POST", f"/nodes/{SERIAL}/apps", json={"app": app}).status_code == 201

    node.start_agent()
    node.wait_for("both apps RUNNING", lambda s: s == {"c1": "RUNNING", "v1": "RUNNING"})

    assert node.node()["state"] == "registered"
    assert len(node.domains()) == 1  # `virsh list`: running domains only
    (container,) = node.containers()
    assert container["State"] == "running"
    assert container["Labels"]["outpost.name"] == "c1"


def test_the_vm_console_shows_the_guest_booted(node: Node):
    logs = list(node.state_dir.glob("apps/*/console.log"))
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if any("OUTPOST-TESTVM-UP" in p.read_text(errors="replace") for p in logs):
            return
        time.sleep(1)
        logs = list(node.state_dir.glob("apps/*/console.log"))
    pytest.fail(f"no VM console log shows the boot marker: {logs}")


def test_an_agent_restart_neither_duplicates_nor_loses_the_apps(node: Node):
    domains, containers = node.domains(), node.containers()
    node.stop_agent()
    assert node.domains() == domains  # apps keep running without the agent
    node.start_agent()
    time.sleep(5)  # a few reconcile passes of the new agent
    node.wait_for("RUNNING again", lambda s: s == {"c1": "RUNNING", "v1": "RUNNING"})
    assert node.domains() == domains
    assert [c["Id"] for c in node.containers()] == [c["Id"] for c in containers]


def test_removing_the_container_app_removes_the_container(node: Node):
    assert node.controller.api("DELETE", f"/nodes/{SERIAL}/apps/c1").status_code == 200
    node.wait_for("c1 gone", lambda s: s == {"v1": "RUNNING"})
    assert node.containers() == []
    assert len(node.domains()) == 1


def test_removing_the_vm_app_removes_the_domain(node: Node):
    assert node.controller.api("DELETE", f"/nodes/{SERIAL}/apps/v1").status_code == 200
    node.wait_for("v1 gone", lambda s: s == {})
    assert node.domains("--all") == []
