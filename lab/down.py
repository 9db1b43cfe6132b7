"""``outpost-lab down``: remove everything the lab made, from its state file and what is
found running, not only what was recorded.

Order: the agents (recorded ones and any found in a lab node's namespace or naming a node's
dir: one a tester restarted by hand has another pid) and QEMU nodes first, so nothing
re-creates a workload; then the lab nodes' containers (every Outpost container in the lab's
own podman store) and libvirt domains (found by the node uuid in their metadata, uuids from
the state file, each node's ``identity/node.json`` and the controller, or by a file under
the lab dir in their XML); the swtpms; anything else in a lab namespace; the controller;
the namespaces (the nodes' and the container app namespaces their agents made), the host
ends of the veths (deleted explicitly: a namespace whose last process just died can stay
alive a minute longer, held by closing TCP sockets) and the bridge; any process still
naming the lab dir; last the podman store's mounts.  Each step tolerates what is already
gone, so ``down`` can be repeated; logs and the state file (phase ``down``) stay.
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
from lab.discover import ROLES, LabProcess, find_processes
from lab.errors import LabError
from lab.libvirt_domains import remove_domains
from lab.operator import Operator
from lab.podman_store import release_store, remove_containers
from lab.procs import alive, proc_ref, stop_all
from lab.state import LabState, ProcRef, lab_lock, load_state, save_state
from lab.watch import Progress

__all__ = ["DownReport", "down", "node_uuids", "teardown"]


@dataclass
class DownReport:
    """What ``down`` did (``-o json`` prints it)."""

    found: bool = True
    stopped: list[str] = field(default_factory=list)
    containers: int = 0
    domains: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def node_uuids(state: LabState) -> set[str]:
    """The lab nodes' uuids: recorded ones, those in the agents' identity files and those
    the lab's controller knows (when it answers)."""
    uuids = {n.uuid for n in state.nodes if n.uuid}
    for node in state.nodes:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            raw = (node.state_dir / "identity" / "node.json").read_text()
            uuids.add(str(json.loads(raw)["node_uuid"]))
    ctl = state.controller.process
    if ctl is not None and alive(ctl):
        with contextlib.suppress(LabError, KeyError, TypeError):
            serials = {n.serial for n in state.nodes}
            known = Operator(state.controller, timeout_s=10).nodes()
            uuids |= {str(n["uuid"]) for s, n in known.items() if s in serials and n["uuid"]}
    return uuids


def _stop(
    found: list[LabProcess], roles: set[str], extra: list[ProcRef], timeout_s: float
) -> list[str]:
    """Stop the recorded ``extra`` processes and the found ones of ``roles``; their names."""
    refs = {(r.pid, r.start_ticks): r for r in extra}
    refs.update({(p.ref.pid, p.ref.start_ticks): p.ref for p in found if p.role in roles})
    return [r.name for r in stop_all(list(refs.values()), timeout_s=timeout_s)]


def _recorded(state: LabState, *roles: str) -> list[ProcRef]:
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

    uuids = node_uuids(state)  # while the controller still answers
    found = find_processes(state)
    report.stopped += _stop(found, {"agent"}, _recorded(state, "agent"), 15.0)
    if state.kind == "qemu":
        from lab.qemu_fleet import stop_qemu_nodes

        step("qemu nodes", lambda: report.stopped.extend(stop_qemu_nodes(state)))
    uuids |= node_uuids(state)  # an agent may have onboarded meanwhile
    if state.podman is not None:
        store = state.podman

        def containers() -> None:
            report.containers = remove_containers(store)

        step("containers", containers)
    if state.kind == "process":
        step(
            "libvirt domains",
            lambda: report.domains.extend(remove_domains(state.libvirt_uri, uuids, state.dir)),
        )
    found = find_processes(state)
    report.stopped += _stop(found, {"swtpm", "qemu"}, _recorded(state, "swtpm", "qemu"), 5.0)
    namespaces = sorted(
        {n.netns for n in state.nodes if n.netns} | set(netlab.lab_namespaces(state.lab_id))
    )
    report.stopped += _kill_netns_processes(namespaces)
    ctl = [state.controller.process] if state.controller.process else []
    report.stopped += _stop(find_processes(state), {"controller"}, ctl, 15.0)
    for ns in namespaces + netlab.app_namespaces(uuids):
        if (netlab.NETNS_DIR / ns).exists():
            netlab.delete_netns(ns)
            report.namespaces.append(ns)
    veths = {n.host_veth for n in state.nodes if n.host_veth} | set(netlab.lab_links(state.lab_id))
    for veth in sorted(veths):
        if netlab.delete_link(veth):
            report.links.append(veth)
    if state.network is not None:
        netlab.delete_bridge(state.network.bridge)
    report.stopped += _stop(find_processes(state), set(ROLES.values()) - {"dnsmasq"}, [], 5.0)
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
