"""``outpost-lab status``: the lab's processes (from the state file, checked in /proc) and
its nodes as the controller sees them (onboarded, trust, app states)."""

from __future__ import annotations

from typing import Any

from lab.errors import LabError
from lab.operator import Operator
from lab.procs import alive
from lab.state import LabState, ProcRef
from lab.watch import NodeView, observe

__all__ = ["gather", "render"]


def _proc(ref: ProcRef | None) -> str:
    if ref is None:
        return "-"
    return "running" if alive(ref) else "stopped"


def gather(state: LabState) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (``--json`` prints it as is)."""
    views: dict[str, NodeView] = {}
    controller_error = ""
    ctl = state.controller.process
    if ctl is not None and alive(ctl):
        try:
            views = observe(Operator(state.controller, timeout_s=15), state)
        except LabError as exc:
            controller_error = str(exc)
    nodes = []
    for node in state.nodes:
        view = views.get(node.name)
        nodes.append(
            {
                "name": node.name,
                "serial": node.serial,
                "kind": node.kind,
                "netns": node.netns,
                "ip": str(node.ip) if node.ip else "",
                "dir": str(node.dir),
                "processes": {role: _proc(ref) for role, ref in node.processes.items()},
                "uuid": (view.uuid if view else "") or node.uuid,
                "onboarded": bool(view and view.registered),
                "trust": view.trust if view else "",
                "apps": dict(view.apps) if view else {},
                "app_errors": dict(view.app_errors) if view else {},
            }
        )
    return {
        "dir": str(state.dir),
        "phase": state.phase,
        "kind": state.kind,
        "created_at": state.created_at,
        "error": state.error,
        "controller": {
            "url": state.controller.url,
            "process": _proc(ctl),
            "pid": ctl.pid if ctl else None,
            "error": controller_error,
            "cli_config": str(state.cli_config),
        },
        "network": (
            {"bridge": state.network.bridge, "subnet": str(state.network.subnet)}
            if state.network
            else None
        ),
        "nodes": nodes,
        "summary": {
            "nodes": len(nodes),
            "onboarded": sum(n["onboarded"] for n in nodes),
            "attested": sum(n["trust"] == "attested" for n in nodes),
        },
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )


def render(status: dict[str, Any]) -> str:
    s, ctl = status["summary"], status["controller"]
    lines = [
        f"lab {status['dir']}: {status['phase']} ({s['nodes']} {status['kind']} nodes,"
        f" {s['onboarded']} onboarded, {s['attested']} attested; created {status['created_at']})",
        f"controller  {ctl['url']}  {ctl['process']}"
        + (f" (pid {ctl['pid']})" if ctl["pid"] and ctl["process"] == "running" else ""),
    ]
    if status["network"]:
        lines.append(f"network     {status['network']['bridge']} {status['network']['subnet']}")
    lines.append(f"operator    outpost --config {ctl['cli_config']} nodes")
    if ctl["error"]:
        lines.append(f"controller not answering: {ctl['error']}")
    if status["error"]:
        lines.append(f"last error: {status['error'].splitlines()[0]}")
    roles = sorted({r for n in status["nodes"] for r in n["processes"]})
    rows = [
        [
            n["name"],
            n["ip"] or "-",
            *[n["processes"].get(r, "-") for r in roles],
            n["uuid"][:8] or "-",
            "yes" if n["onboarded"] else "no",
            n["trust"] or "-",
            ", ".join(f"{a}={st}" for a, st in sorted(n["apps"].items())) or "-",
        ]
        for n in status["nodes"]
    ]
    header = ["NODE", "IP", *[r.upper() for r in roles], "UUID", "ONBOARDED", "TRUST", "APPS"]
    lines += ["", _table(rows, header)]
    return "\n".join(lines)
