"""``outpost-lab down``: remove everything the lab made, from its state file alone.

Order: agents and QEMU nodes first (so nothing re-creates a workload), then the lab nodes'
containers and libvirt domains (found by the node uuid label/metadata; uuids come from the
state file and from each node's ``identity/node.json``, which also covers a crashed
``up`` that never recorded them), the swtpms, any process still in a lab namespace or
still naming the lab dir (a pid ``up`` had no time to record), the namespaces and the
bridge, the controller, and last the podman store's mounts.  Each step tolerates what is
already gone, so ``down`` can be repeated; logs and the state file (phase ``down``) stay.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab import netlab
from lab.errors import LabError
from lab.libvirt_domains import remove_domains
from lab.podman_store import release_store, remove_containers
from lab.procs import proc_ref, processes_using, stop_all
from lab.state import LabState, ProcRef, lab_lock, load_state, save_state
from lab.watch import Progress

__all__ = ["DownReport", "down", "node_uuids", "teardown"]


@dataclass
class DownReport:
    found: bool = True
    stopped: list[str] = field(default_factory=list)
    containers: int = 0
    domains: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def node_uuids(state: LabState) -> set[str]:
    """The lab nodes' uuids: recorded ones and those in the agents' identity files."""
    uuids = {n.uuid for n in state.nodes if n.uuid}
    for node in state.nodes:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            raw = (node.state_dir / "identity" / "node.json").read_text()
            uuids.add(str(json.loads(raw)["node_uuid"]))
    return uuids


def _roles(state: LabState, *roles: str) -> list[ProcRef]:
    return [ref for n in state.nodes for role, ref in n.processes.items() if role in roles]


def _kill_netns_processes(namespaces: list[str]) -> list[str]:
    killed = []
    for ns in namespaces:
        for pid in netlab.netns_pids(ns):
            with contextlib.suppress(ProcessLookupError):
                ref = proc_ref(pid, f"pid {pid} in {ns}")
                os.kill(pid, signal.SIGKILL)
                killed.append(ref.name)
    return killed


def teardown(state: LabState, progress: Progress | None = None) -> DownReport:
    """Remove the lab ``state`` describes (caller holds the lock)."""
    report = DownReport()
    say: Callable[[str], None] = progress.say if progress else (lambda _: None)
    state.phase = "stopping"
    save_state(state)

    def step(what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except LabError as exc:
            report.problems.append(f"{what}: {exc}")

    report.stopped += [r.name for r in stop_all(_roles(state, "agent"))]
    if state.kind == "qemu":
        from lab.qemu_fleet import stop_qemu_nodes

        step("qemu nodes", lambda: report.stopped.extend(stop_qemu_nodes(state)))
    uuids = node_uuids(state)
    if state.podman is not None:
        store = state.podman

        def containers() -> None:
            report.containers = remove_containers(store, uuids)

        step("containers", containers)
    if uuids and state.kind == "process":
        step(
            "libvirt domains",
            lambda: report.domains.extend(remove_domains(state.libvirt_uri, uuids)),
        )
    report.stopped += [r.name for r in stop_all(_roles(state, "swtpm", "qemu"), timeout_s=5)]
    namespaces = sorted(
        {n.netns for n in state.nodes if n.netns} | set(netlab.lab_namespaces(state.lab_id))
    )
    report.stopped += _kill_netns_processes(namespaces)
    for ns in namespaces:
        if (netlab.NETNS_DIR / ns).exists():
            netlab.delete_netns(ns)
            report.namespaces.append(ns)
    if state.network is not None:
        netlab.delete_bridge(state.network.bridge)
    if state.controller.process is not None:
        report.stopped += [r.name for r in stop_all([state.controller.process])]
    report.stopped += [r.name for r in stop_all(processes_using(state.dir), timeout_s=5)]
    if state.podman is not None:
        release_store(state.podman)
    for node in state.nodes:
        node.processes = {}
    state.controller.process = None
    state.phase = "down"
    save_state(state)
    say(
        f"lab down: stopped {len(report.stopped)} process(es), removed {report.containers}"
        f" container(s), {len(report.domains)} domain(s), {len(report.namespaces)} namespace(s)"
    )
    return report


def down(lab_dir: Path, progress: Progress | None = None) -> DownReport:
    """Tear down the lab in ``lab_dir``; nothing to do (found=False) when there is none."""
    path = Path(lab_dir)
    if not (path / "lab.json").exists():
        return DownReport(found=False)
    with lab_lock(path):
        state = load_state(path)
        if state is None:
            return DownReport(found=False)
        return teardown(state, progress)
