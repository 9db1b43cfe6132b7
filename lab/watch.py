"""Watching the fleet through the operator API: one line per node state change.

``up`` waits for every node to be *attested*, ``deploy`` for an app to be *RUNNING* on every
node; both poll ``GET /nodes`` and ``GET /trust/nodes`` once a second and print a line
only when a node's state changes (quiet otherwise).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from lab.discover import LabProcess, find_processes
from lab.errors import LabError
from lab.operator import Operator
from lab.state import LabState, NodeRecord

__all__ = ["NodeView", "Progress", "observe", "wait_for_nodes"]

POLL_S = 1.0


class Progress:
    """Timestamped lines (seconds since the command started) on stdout."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, message: str) -> None:
        print(f"[lab {self.elapsed():6.1f}s] {message}", file=self.out, flush=True)


@dataclass(frozen=True)
class NodeView:
    """One node as the controller sees it."""

    serial: str
    uuid: str = ""
    registered: bool = False
    trust: str = "unattested"
    trust_reason: str = ""
    apps: dict[str, str] = field(default_factory=dict)
    """Reported state per app name (assigned apps not yet reported are absent)."""
    app_errors: dict[str, str] = field(default_factory=dict)
    ports: dict[str, Any] | None = None
    """The node's reported port state (protocol.ports.PortState), None before any report."""

    @property
    def attested(self) -> bool:
        return self.trust == "attested"


def _view(serial: str, node: dict[str, Any] | None, trust: dict[str, Any] | None) -> NodeView:
    if node is None:
        return NodeView(serial)
    reported = {a["name"]: a for a in (node.get("info") or {}).get("apps", [])}
    return NodeView(
        serial=serial,
        uuid=node.get("uuid") or "",
        registered=node.get("state") == "registered",
        trust=(trust or {}).get("state", "unattested"),
        trust_reason=(trust or {}).get("reason", ""),
        apps={name: a.get("state", "") for name, a in reported.items()},
        app_errors={name: a.get("error", "") for name, a in reported.items() if a.get("error")},
        ports=(node.get("info") or {}).get("ports"),
    )


def observe(api: Operator, lab: LabState) -> dict[str, NodeView]:
    """Every lab node's view, by node name."""
    nodes, trust = api.nodes(), api.trust()
    return {n.name: _view(n.serial, nodes.get(n.serial), trust.get(n.serial)) for n in lab.nodes}


def _dead_process(node: NodeRecord, found: list[LabProcess]) -> str:
    """A role ``up`` started for ``node`` that no process fills now (one restarted by hand
    with another pid fills it)."""
    for role in node.processes:
        if not any(p.node == node.name and p.role == role for p in found):
            return role
    return ""


def _log_tail(node: NodeRecord, role: str) -> str:
    path = node.dir / f"{role}.log" if role != "qemu" else node.console_log
    try:
        lines = path.read_text(errors="replace").splitlines()[-15:]
    except OSError:
        return ""
    return "\n".join("    " + line for line in lines)


def wait_for_nodes(
    lab: LabState,
    api: Operator,
    progress: Progress,
    describe: Callable[[NodeView], str],
    done: Callable[[NodeView], bool],
    timeout_s: float,
    on_change: Callable[[str, NodeView], None] = lambda name, view: None,
) -> dict[str, NodeView]:
    """Poll until ``done`` holds for every node; print ``describe`` when it changes.

    Raises LabError when a node's process dies or the timeout passes."""
    shown: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        views = observe(api, lab)
        for node in lab.nodes:
            view = views[node.name]
            text = describe(view)
            if text and shown.get(node.name) != text:
                shown[node.name] = text
                on_change(node.name, view)
                progress.say(f"{node.name}: {text}")
        if all(done(v) for v in views.values()):
            return views
        found = find_processes(lab)
        for node in lab.nodes:
            role = _dead_process(node, found) if not done(views[node.name]) else ""
            if role:
                raise LabError(
                    f"{node.name}: its {role} exited; last lines of its log:\n"
                    f"{_log_tail(node, role)}"
                )
        if time.monotonic() > deadline:
            waiting = sorted(n for n, v in views.items() if not done(v))
            raise LabError(
                f"timed out after {timeout_s:.0f} s; {len(waiting)} node(s) not there yet: "
                f"{', '.join(waiting[:10])}{' …' if len(waiting) > 10 else ''}"
                f" (logs: {lab.dir}/nodes/<node>/)"
            )
        time.sleep(POLL_S)
