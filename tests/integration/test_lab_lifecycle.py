"""``outpost-lab`` as a tester uses it, on two process nodes: every command's ``-o json``
prints JSON; the nodes run with the agent's port lockdown and report their port state; an
agent restarted by hand is reported running and ``down`` removes it with everything it
made; ``up`` works again at once on the same port, past the sockets ``down`` left in
TIME_WAIT.

Checked independently of the lab's code (operator API, ``nft`` and ``ip netns``, podman,
``virsh``, /proc).  The tests share one lab and run in file order.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.netns import ns_run, wait_for
from tests.integration.test_lab_fleet import Lab, lab_cli, leftovers, live, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NODES = 2


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    """The command's stdout, which must be one JSON document."""
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def status(lab: Lab) -> dict[str, Any]:
    return as_json(lab_cli("status", "--dir", str(lab.dir), "-o", "json"))


@pytest.fixture(scope="module")
def lab(built_images) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    with running_lab(NODES, "-o", "json") as the_lab:
        yield the_lab


def test_up_as_json_prints_the_lab_and_keeps_progress_on_stderr(lab: Lab):
    result = json.loads(lab.up_output)
    assert result["lab"]["summary"] == {"nodes": NODES, "onboarded": NODES, "attested": NODES}
    assert result["took_s"] > 0
    assert [n["processes"] for n in result["lab"]["nodes"]] == [
        {"swtpm": "running", "agent": "running"}
    ] * NODES


def test_process_nodes_enforce_and_report_the_agents_port_lockdown(lab: Lab):
    def reported() -> list[dict[str, Any]]:
        nodes = lab.api("GET", "/nodes").json()["nodes"]
        ports = [(n.get("info") or {}).get("ports") for n in nodes]
        return ports if all(p and p["firewall"]["enforced"] for p in ports) else []

    ports = wait_for(reported, 60, "every node to report an enforced firewall")
    assert [p["open_ports"] for p in ports] == [[]] * NODES  # type: ignore[union-attr]
    for node in lab.state()["nodes"]:  # the agent's own table, inside the node's namespace
        table = ns_run(node["netns"], "nft", "list", "table", "inet", "outpost").stdout
        assert "policy drop" in table
    shown = status(lab)["nodes"]
    assert [n["ports"]["enforced"] for n in shown] == [True] * NODES


def test_deploy_as_json_prints_the_app_state_per_node(lab: Lab):
    result = as_json(lab_cli("deploy", "--dir", str(lab.dir), "-o", "json"))
    assert result["app"] == "hello"
    assert {n: v["state"] for n, v in result["nodes"].items()} == {
        f"lab-node-0{i}": "RUNNING" for i in range(1, NODES + 1)
    }


def restart_agent_by_hand(lab: Lab, index: int) -> subprocess.Popen[bytes]:
    """Stop node ``index``'s agent and start it again as a tester would, from the lab dir
    with ``ip netns exec`` and a relative settings path."""
    state = lab.state()
    node = state["nodes"][index]
    old = node["processes"]["agent"]["pid"]
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: not live(old), 30, "the recorded agent to stop")
    settings = f"nodes/{node['name']}/agent.json"
    env = {**os.environ, "CONTAINERS_CONF": f"{state['podman']['directory']}/containers.conf"}
    with open(lab.dir / "nodes" / node["name"] / "agent.log", "ab") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", node["netns"], sys.executable, "-m", "node_agent.cli",
             "--config", settings, "run"],
            cwd=lab.dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


@pytest.fixture(scope="module")
def hand_agent(lab: Lab) -> Iterator[subprocess.Popen[bytes]]:
    agent = restart_agent_by_hand(lab, 0)
    try:
        yield agent
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()


def test_status_reports_an_agent_restarted_by_hand_as_running(
    lab: Lab, hand_agent: subprocess.Popen[bytes]
):
    first = status(lab)["nodes"][0]
    assert first["processes"] == {"swtpm": "running", "agent": "running"}
    assert first["pids"]["agent"] == hand_agent.pid
    assert first["restarted"] == ["agent"]
    row = next(ln for ln in lab_cli("status", "--dir", str(lab.dir)).stdout.splitlines()
               if ln.startswith("lab-node-01"))  # fmt: skip
    assert row.split()[2:4] == ["running*", "running"]


def test_down_removes_the_hand_started_agent_and_all_it_made(
    lab: Lab, hand_agent: subprocess.Popen[bytes]
):
    wait_for(
        lambda: (
            lab.api("GET", "/nodes/lab-node-01").json()["info"]["apps"][0]["state"] == "RUNNING"
        ),
        60,
        "the restarted agent to report its app",
    )
    state = lab.state()
    pids = [state["controller"]["process"]["pid"], hand_agent.pid]
    pids += [r["pid"] for n in state["nodes"] for r in n["processes"].values()]
    uuids = [n["uuid"] for n in lab.api("GET", "/nodes").json()["nodes"]]
    assert len(lab.podman("ps", "--all", "--quiet").split()) == NODES

    result = as_json(lab_cli("down", "--dir", str(lab.dir), "-o", "json"))
    assert result["problems"] == [] and result["containers"] == NODES
    assert "agent lab-node-01" in result["stopped"]
    assert leftovers(lab, pids, uuids) == {
        "processes": [],
        "namespaces": [],
        "links": [],  # checked at once: no host veth waits for its namespace to die
        "domains": [],
        "containers": [],
    }
    assert hand_agent.wait(10) is not None
    app_netns = [f"outpost-{u[:8]}-" for u in uuids]
    assert [n for n in os.listdir("/run/netns") if n.startswith(tuple(app_netns))] == []


def time_wait_on(port: int) -> None:
    """Leave a server-side socket of ``port`` in TIME_WAIT (the server closes first)."""
    with socket.create_server(("127.0.0.1", port)) as server:
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()
        client.recv(1)
        client.close()
    out = subprocess.run(["ss", "-Htan", "state", "time-wait", f"sport = :{port}"],
                         capture_output=True, text=True).stdout  # fmt: skip
    assert out.strip(), "a TIME_WAIT socket on the port"


def test_up_again_right_after_down_on_the_same_port(lab: Lab):
    time_wait_on(lab.port)
    started = time.monotonic()
    up = lab_cli("up", "--nodes", "1", "--dir", str(lab.dir), "--controller-port",
                 str(lab.port), "-o", "json")  # fmt: skip
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
    assert json.loads(up.stdout)["lab"]["summary"]["attested"] == 1
    assert time.monotonic() - started < 120
    again = as_json(lab_cli("down", "--dir", str(lab.dir), "-o", "json"))
    assert again["problems"] == []
