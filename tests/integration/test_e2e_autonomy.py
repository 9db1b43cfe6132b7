"""Config changes and commands end to end: CLI changes reach the node through long-poll,
commands act once, and the node runs on from its checkpoint while the controller is away,
then reports everything it queued.

Real controller and agent processes (default timers: long-poll on), real podman and
libvirt; tests share one node and run in file order.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from outpost_cli.main import main as outpost_main
from tests.fixtures.e2e import E2ENode, e2e_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TICKER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.5; done"]
APPS = {"ticker": "RUNNING", "vm1": "RUNNING"}
LATENCY = {}


@pytest.fixture(scope="module")
def node(
    tmp_path_factory, built_images, podman_engine, libvirt_uri, hypervisor_accel
) -> Iterator[E2ENode]:  # type: ignore[no-untyped-def]
    with e2e_node(
        tmp_path_factory.mktemp("autonomy"),
        "auto-1",
        built_images,
        podman_engine,
        libvirt_uri,
        hypervisor_accel,
        log_ship_interval_s=1.0,
    ) as n:
        yield n


def outpost(node: E2ENode, *args: str) -> int:
    return outpost_main(
        ["--url", node.url, "--token", node.token, "--ca", str(node.root_ca), *args]
    )


def apply(node: E2ENode, tmp_path, spec: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump({"kind": "App", "spec": spec}))
    assert outpost(node, "apply", "-f", str(path)) == 0


def container(node: E2ENode) -> dict:  # type: ignore[type-arg]
    (c,) = node.containers()
    return c


def started_at(node: E2ENode, cid: str) -> str:
    out = subprocess.run(
        ["podman", *node.podman.global_args, "inspect", cid],
        capture_output=True,
        text=True,
        check=True,
        env=node.env,
    ).stdout
    return json.loads(out)[0]["State"]["StartedAt"]


def test_a_cli_change_reaches_the_node_through_long_poll(node: E2ENode, tmp_path):
    ticker = {"name": "ticker", "kind": "container", "image": "busybox", "command": TICKER}
    apply(node, tmp_path, ticker)
    apply(
        node,
        tmp_path,
        {"name": "vm1", "kind": "vm", "image": "testvm", "resources": {"memory_mib": 96}},
    )
    assert outpost(node, "assign", node.serial, "ticker") == 0
    assert outpost(node, "assign", node.serial, "vm1") == 0
    node.start_agent()
    node.wait_states(APPS)
    before = container(node)["Id"]
    node.wait_passes(1, config_requests=2)  # the agent is idle, parked in a long-poll

    t0 = time.monotonic()
    apply(node, tmp_path, {**ticker, "env": {"MODE": "changed"}})
    node.wait_for(
        "the container recreated with the new env",
        lambda: [c["Id"] for c in node.containers()] not in ([before], []),
    )
    LATENCY["cli_to_podman_s"] = round(time.monotonic() - t0, 2)
    print(f"\nCLI apply → new container on the node: {LATENCY['cli_to_podman_s']} s")


def test_a_restart_command_restarts_the_container_once(node: E2ENode):
    node.wait_states(APPS)
    cid = container(node)["Id"]
    first = started_at(node, cid)
    assert outpost(node, "restart", node.serial, "ticker") == 0
    node.wait_for("a restart", lambda: started_at(node, cid) != first)
    second = started_at(node, cid)
    node.stop_agent()
    node.start_agent()
    node.wait_passes(3)  # several passes of the restarted agent
    node.wait_states(APPS)
    assert container(node)["Id"] == cid and started_at(node, cid) == second


def test_a_purge_recreates_the_container_once(node: E2ENode):
    cid = container(node)["Id"]
    assert outpost(node, "purge", node.serial, "ticker") == 0
    node.wait_for(
        "a new container", lambda: [c["Id"] for c in node.containers()] not in ([cid], [])
    )
    new = container(node)["Id"]
    node.stop_agent()
    node.start_agent()
    node.wait_passes(3)
    node.wait_states(APPS)
    assert container(node)["Id"] == new


def _ticks(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.search(r"tick-(\d+)", line))]


def test_the_node_runs_on_without_the_controller_and_reports_everything_after(node: E2ENode):
    node.wait_states(APPS)
    app_uuid = container(node)["Labels"]["outpost.app"]
    node.stop_controller()
    # a node losing its runtime state (as after a reboot), its libvirtd restarted, and
    # its agent restarted — all while the controller is away
    node.stop_agent()
    subprocess.run(
        ["podman", *node.podman.global_args, "rm", "-f", container(node)["Id"]],
        check=True,
        capture_output=True,
        env=node.env,
    )
    (domain,) = node.domains()
    subprocess.run(
        ["virsh", "-c", node.libvirt_uri, "destroy", domain], check=True, capture_output=True
    )
    _restart_system_libvirtd()
    node.start_agent()
    node.wait_for(
        "the apps back from the checkpoint",
        lambda: len(node.domains()) == 1 and [c["State"] for c in node.containers()] == ["running"],
    )
    time.sleep(4)  # lines printed and queued while the controller is away

    node.start_controller()
    node.wait_states(APPS)
    console = node.state_dir / "apps" / app_uuid / "console.log"

    def delivered() -> list[int]:
        r = node.api(
            "GET", f"/nodes/{node.serial}/logs", params={"source": f"app:{app_uuid}", "limit": 5000}
        )
        return _ticks([x["msg"] for x in r.json()["lines"]])

    on_disk = _ticks(console.read_text().splitlines())
    node.wait_for("the queued console lines", lambda: delivered()[-1:] >= on_disk[-1:])
    got = delivered()
    gaps = [(a, b) for a, b in itertools.pairwise(got) if b not in (a + 1, 1)]
    assert gaps == [], f"lines lost between {gaps}"
    agent_lines = node.api(
        "GET", f"/nodes/{node.serial}/logs", params={"source": "agent", "limit": 5000}
    ).json()["lines"]
    assert any("enforcing checkpointed config" in x["msg"] for x in agent_lines)


def _restart_system_libvirtd() -> None:
    """Stop the system libvirtd by its pid file (never by name: other tests run private
    daemons beside this one) and start it again."""
    pid_file = Path("/run/libvirtd.pid")
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, "the system libvirtd did not stop in 30 s"
        time.sleep(0.1)
    subprocess.run(["libvirtd", "-d"], check=True)
