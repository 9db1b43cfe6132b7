"""``outpost-lab`` with 20 process nodes, driven through its command line: up → every node
onboarded and attested over its own swtpm → an app RUNNING on all of them → status →
down leaves no process, namespace, container or domain behind.

Checked independently of the lab's code: the operator API (admin token), ``podman`` on the
lab's store, ``virsh``, ``ip netns`` and /proc.  The tests share one lab and run in file order.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.netns import tcp_scan

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NODES = 20
APP = "hello"


def lab_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def require_lab_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("process nodes need root (network namespaces)")
    for tool in ("ip", "nft", "nsenter", "swtpm", "podman", "virsh"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def new_lab_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="outpost-lab-it-", dir="/tmp"))


@dataclass
class Lab:
    dir: Path
    port: int
    up_output: str = ""

    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / "lab.json").read_text())

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        cli = json.loads((self.dir / "cli.json").read_text())
        token = Path(cli["token_file"]).read_text().strip()
        return requests.request(
            method,
            f"{cli['url']}/api/v1{path}",
            headers={"Authorization": f"Bearer {token}"},
            verify=cli["ca"],
            timeout=30,
            **kwargs,
        )

    def podman(self, *args: str) -> str:
        store = self.state()["podman"]
        d = store["directory"]
        argv = ["podman", "--root", f"{d}/root", "--runroot", f"{d}/run"]
        argv += ["--storage-driver", store["storage_driver"], *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def remove_lab_dir(directory: Path) -> None:
    lab_cli("down", "--dir", str(directory))
    with open("/proc/self/mountinfo") as mountinfo:
        points = [ln.split()[4] for ln in mountinfo if ln.split()[4].startswith(f"{directory}/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)
    shutil.rmtree(directory, ignore_errors=True)


# -- what a lab may leave behind, looked at without the lab's code ----------------------


def live(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has exited


def processes_naming(directory: Path) -> list[str]:
    """Live processes (any program) with the lab dir on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline and live(int(entry.name)):
            found.append(f"{entry.name}: {cmdline[:160]}")
    return found


def leftovers(lab: Lab, pids: list[int], uuids: list[str]) -> dict[str, list[str]]:
    state = lab.state()
    prefix, bridge = f"olab-{state['lab_id']}-", f"olab{state['lab_id']}"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    domains = subprocess.run(
        ["virsh", "-c", state["libvirt_uri"], "list", "--all", "--name"],
        capture_output=True,
        text=True,
    ).stdout.split()
    containers = json.loads(lab.podman("ps", "--all", "--format", "json") or "[]")
    return {
        "processes": [str(p) for p in pids if live(p)] + processes_naming(lab.dir),
        "namespaces": [ln.split()[0] for ln in netns.splitlines() if ln.startswith(prefix)],
        "links": [ln.split()[0] for ln in links.splitlines() if ln.startswith(bridge)],
        "domains": [d for d in domains if any(d.startswith(f"outpost-{u[:8]}-") for u in uuids)],
        "containers": [
            c["Names"][0] for c in containers if c.get("Labels", {}).get("outpost.node") in uuids
        ],
    }


def everything_running(lab: Lab) -> tuple[list[int], list[str]]:
    """Pids of the lab's processes (from its state and podman) and its node uuids."""
    state = lab.state()
    pids = [state["controller"]["process"]["pid"]]
    pids += [ref["pid"] for n in state["nodes"] for ref in n["processes"].values()]
    uuids = [n["uuid"] for n in lab.api("GET", "/nodes").json()["nodes"] if n["uuid"]]
    for cid in lab.podman("ps", "--all", "--quiet").split():
        conmon = lab.podman("inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", cid)
        pids += [int(p) for p in conmon.split() if p.isdigit() and int(p) > 0]
    return pids, uuids


# -- the fleet --------------------------------------------------------------------------


@contextlib.contextmanager
def running_lab(nodes: int, *up_args: str) -> Iterator[Lab]:
    """``outpost-lab up --nodes N`` in a new dir on a free port; removed afterwards."""
    require_lab_host()
    directory = new_lab_dir()
    the_lab = Lab(directory, free_port())
    try:
        up = lab_cli("up", "--nodes", str(nodes), "--dir", str(directory),
                     "--controller-port", str(the_lab.port), *up_args)  # fmt: skip
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        the_lab.up_output = up.stdout
        yield the_lab
    finally:
        remove_lab_dir(directory)


@pytest.fixture(scope="module")
def lab(built_images) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    with running_lab(NODES) as the_lab:
        yield the_lab


def test_up_onboards_and_attests_every_node(lab: Lab):
    nodes = lab.api("GET", "/nodes").json()["nodes"]
    assert len(nodes) == NODES
    assert {n["state"] for n in nodes} == {"registered"}
    trust = lab.api("GET", "/trust/nodes").json()["nodes"]
    assert [t["state"] for t in trust] == ["attested"] * NODES
    assert {t["tpm"] for t in trust} != {""}, "each node attests with a TPM quote"
    assert all(t["device_key_in_tpm"] for t in trust)


def test_up_reports_each_node_coming_up_on_its_own_line(lab: Lab):
    out = lab.up_output
    for i in range(1, NODES + 1):
        assert f"lab-node-{i:02d}: attested" in out
    assert f"{NODES}/{NODES} nodes attested" in out


def test_every_node_has_its_own_namespace_swtpm_and_agent(lab: Lab):
    nodes = lab.state()["nodes"]
    assert len({n["netns"] for n in nodes}) == NODES
    swtpms = {n["processes"]["swtpm"]["pid"] for n in nodes}
    agents = {n["processes"]["agent"]["pid"] for n in nodes}
    assert len(swtpms) == len(agents) == NODES
    for n in nodes:  # the agent runs in its node's namespace, not the host's
        agent_ns = os.readlink(f"/proc/{n['processes']['agent']['pid']}/ns/net")
        assert agent_ns != os.readlink("/proc/self/ns/net")
        assert agent_ns == os.readlink(f"/proc/{n['processes']['swtpm']['pid']}/ns/net")


def test_a_node_reaches_the_controller_and_nothing_else(lab: Lab):
    state = lab.state()
    host_ip = state["network"]["host_ip"]
    first, second = state["nodes"][0], state["nodes"][1]
    with socket.create_server((host_ip, 0)) as other_service:
        other = other_service.getsockname()[1]
        seen = tcp_scan(first["netns"], host_ip, [lab.port, other])
    assert seen == {lab.port: "open", other: "filtered"}
    assert tcp_scan(first["netns"], second["ip"], [22, 2321]) == {22: "filtered", 2321: "filtered"}


def test_up_refuses_a_second_lab_in_the_same_dir(lab: Lab):
    again = lab_cli("up", "--nodes", "1", "--dir", str(lab.dir), "--controller-port", "1099")
    assert again.returncode == 1
    assert "already" in again.stderr and "outpost-lab down" in again.stderr


def test_up_refuses_a_controller_port_in_use(lab: Lab, tmp_path: Path):
    other = lab_cli("up", "--nodes", "1", "--dir", str(tmp_path / "l2"),
                    "--controller-port", str(lab.port))  # fmt: skip
    assert other.returncode == 1
    assert f"controller port {lab.port} is in use" in other.stderr
    assert not (tmp_path / "l2" / "lab.json").exists()


def test_deploy_runs_an_app_on_every_node(lab: Lab):
    deploy = lab_cli("deploy", "--dir", str(lab.dir), "--name", APP, timeout=900)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    nodes = lab.api("GET", "/nodes").json()["nodes"]
    states = {n["serial"]: {a["name"]: a["state"] for a in n["info"]["apps"]} for n in nodes}
    assert states == {n["serial"]: {APP: "RUNNING"} for n in nodes}
    running = json.loads(lab.podman("ps", "--format", "json"))
    assert sorted(c["Labels"]["outpost.node"] for c in running) == sorted(n["uuid"] for n in nodes)


def test_status_shows_every_node_attested_with_its_app(lab: Lab):
    status = lab_cli("status", "--dir", str(lab.dir))
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"lab {lab.dir}: up ({NODES} process nodes, {NODES} onboarded")
    rows = [ln for ln in lines if ln.startswith("lab-node-")]
    assert len(rows) == NODES
    for row in rows:
        assert row.split()[2:4] == ["running", "running"]  # agent, swtpm
        assert "attested" in row and f"{APP}=RUNNING" in row
    as_json = json.loads(lab_cli("status", "--dir", str(lab.dir), "--json").stdout)
    assert as_json["summary"] == {"nodes": NODES, "onboarded": NODES, "attested": NODES}


def test_down_leaves_no_process_namespace_container_or_domain(lab: Lab):
    pids, uuids = everything_running(lab)
    assert len(uuids) == NODES and len(pids) >= 1 + 2 * NODES + NODES
    down = lab_cli("down", "--dir", str(lab.dir))
    assert down.returncode == 0, down.stderr
    assert leftovers(lab, pids, uuids) == {
        "processes": [],
        "namespaces": [],
        "links": [],
        "domains": [],
        "containers": [],
    }
    assert lab.state()["phase"] == "down"


def test_down_again_finds_nothing_to_do(lab: Lab):
    again = lab_cli("down", "--dir", str(lab.dir))
    assert again.returncode == 0
    assert "stopped 0 process(es), removed 0 container(s)" in again.stdout
