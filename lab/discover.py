"""The lab's processes as they really are, found in /proc, not only by recorded pid.

``lab.json`` records the pid (and start time) of every process ``up`` started, but a tester
may stop a node's agent and start it again by hand (``ip netns exec olab-… python -m
node_agent.cli --config nodes/lab-node-01/agent.json run``): that agent has another pid.
:func:`find_processes` reads /proc once and returns every live process that belongs to the
lab, with its role and node:

- any process whose network namespace is a lab node's namespace belongs to that node;
- a process of a kind the lab starts (agent, controller, swtpm, QEMU, conmon) elsewhere
  belongs to the node whose dir its command line names (a relative path is resolved
  against the process's working directory), or to the lab itself when it names the lab
  dir but no node's.

``status`` reports from this, ``down`` stops what it finds, and ``up``/``deploy`` judge a
node's process dead only when no process of that role is found for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.procs import alive, proc_ref
from lab.state import LabState, ProcRef

__all__ = ["ROLES", "LabProcess", "find_processes", "named_paths", "node_roles", "role_of"]

NETNS_DIR = Path("/run/netns")
ROLES = {
    "node_agent.cli": "agent",
    "outpost-agent": "agent",
    "controller.cli": "controller",
    "outpost-controller": "controller",
    "swtpm": "swtpm",
    "qemu-system": "qemu",
    "conmon": "conmon",
    "dnsmasq": "dnsmasq",
}
"""Program (or ``python -m`` module) name prefix → role."""
_OUTSIDE_ROLES = {"agent", "controller", "swtpm", "qemu", "conmon"}
"""Roles recognised by command line outside the node namespaces."""
_NODE_ROLES = {"process": ("swtpm", "agent"), "qemu": ("swtpm", "qemu")}


@dataclass(frozen=True)
class LabProcess:
    """One live process of the lab."""

    ref: ProcRef
    role: str
    """agent, controller, swtpm, qemu, conmon, dnsmasq, or other (in a node namespace)."""
    node: str
    """The node's name; "" for the lab's own processes (the controller)."""
    recorded: bool
    """``lab.json`` names this very process (False: started by hand, or not yet saved)."""


def node_roles(kind: str) -> tuple[str, ...]:
    """The roles a node of ``kind`` runs (what ``status`` reports per node)."""
    return _NODE_ROLES.get(kind, ())


def role_of(argv: Sequence[str]) -> str:
    """The role of a command line: its program, or for ``python -m M`` / ``python SCRIPT``
    the module or script."""
    program = Path(argv[0]).name if argv else ""
    if program.startswith("python") and len(argv) > 1:
        program = argv[2] if argv[1] == "-m" and len(argv) > 2 else Path(argv[1]).name
    for prefix, role in ROLES.items():
        if program.startswith(prefix):
            return role
    return "other"


def named_paths(argv: Sequence[str], cwd: str) -> Iterator[str]:
    """The absolute, normalised paths the arguments may name: ``/x``, ``--opt=/x``,
    ``dir=/x``, and relative ones (``nodes/n1/agent.json``) resolved against ``cwd``."""
    for arg in argv[1:]:
        for text in {arg, arg.rpartition("=")[2]}:
            if text.startswith("/") or (cwd and text and not text.startswith("-")):
                yield os.path.normpath(os.path.join(cwd, text))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _netns_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _recorded(state: LabState) -> set[tuple[int, int]]:
    refs: Iterable[ProcRef | None] = [state.controller.process] + [
        ref for node in state.nodes for ref in node.processes.values()
    ]
    return {(r.pid, r.start_ticks) for r in refs if r is not None}


def find_processes(state: LabState) -> list[LabProcess]:
    """Every live process of the lab (see the module docstring)."""
    by_netns = {
        key: node.name
        for node in state.nodes
        if node.netns and (key := _netns_key(NETNS_DIR / node.netns)) is not None
    }
    node_dirs = sorted(
        ((str(node.dir.resolve()), node.name) for node in state.nodes),
        key=lambda item: len(item[0]),
        reverse=True,
    )
    lab_root = str(state.dir.resolve())
    recorded = _recorded(state)
    found: list[LabProcess] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), 1):
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if not raw:
            continue  # a kernel thread or a zombie
        argv = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
        role = role_of(argv)
        node = by_netns.get(_netns_key(entry / "ns" / "net") or (0, 0))
        if node is None:
            if role not in _OUTSIDE_ROLES:
                continue
            node = _owner(entry, argv, node_dirs, lab_root)
            if node is None:
                continue
        ref = proc_ref(int(entry.name), f"{role} {node}".strip())
        if alive(ref):
            key = (ref.pid, ref.start_ticks)
            found.append(LabProcess(ref, role, node, key in recorded))
    return found


def _owner(
    entry: Path, argv: Sequence[str], node_dirs: Sequence[tuple[str, str]], lab_root: str
) -> str | None:
    """The node whose dir the command line names, "" for the lab dir, None: not the lab's."""
    try:
        cwd = os.readlink(entry / "cwd")
    except OSError:
        cwd = ""
    in_lab = False
    for path in named_paths(argv, cwd):
        for directory, name in node_dirs:
            if _under(path, directory):
                return name
        in_lab = in_lab or _under(path, lab_root)
    return "" if in_lab else None
