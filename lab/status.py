"""``outpost-lab status``: the lab's processes as they really run (found in /proc by node
namespace and lab dir, :mod:`lab.discover`; an agent restarted by hand counts, with its new
pid) and its nodes as the controller sees them (onboarded, trust, app states, port state)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lab.discover import LabProcess, find_processes, node_roles
from lab.errors import LabError
from lab.operator import Operator
from lab.state import LabState
from lab.watch import NodeView, observe

__all__ = ["gather", "render"]


def _roles(
    found: list[LabProcess], node: str, roles: Iterable[str]
) -> dict[str, LabProcess | None]:
    """Per role, the node's running process of that role (a recorded one first), or None."""
    ranked = sorted(found, key=lambda p: not p.recorded)
    return {r: next((p for p in ranked if p.node == node and p.role == r), None) for r in roles}


def _ports(ports: dict[str, Any] | None) -> dict[str, Any]:
    """The node's reported port state in brief: lockdown enforced, open ports, networks."""
    if not ports:
        return {"reported": False}
    firewall = ports.get("firewall") or {}
    return {
        "reported": True,
        "enforced": bool(firewall.get("enforced")),
        "generation": firewall.get("generation"),
        "error": firewall.get("error") or "",
        "open_ports": len(ports.get("open_ports") or []),
        "networks": len(ports.get("networks") or []),
    }


def gather(state: LabState) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (``-o json`` prints it as is)."""
    found = find_processes(state)
    views: dict[str, NodeView] = {}
    controller_error = ""
    ctl = _roles(found, "", ["controller"])["controller"]
    if ctl is not None:
        try:
            views = observe(Operator(state.controller, timeout_s=15), state)
        except LabError as exc:
            controller_error = str(exc)
    nodes = []
    for node in state.nodes:
        view = views.get(node.name)
        procs = _roles(found, node.name, [*node_roles(node.kind), *node.processes])
        nodes.append(
            {
                "name": node.name,
                "serial": node.serial,
                "kind": node.kind,
                "netns": node.netns,
                "ip": str(node.ip) if node.ip else "",
                "dir": str(node.dir),
                "processes": {r: "running" if p else "stopped" for r, p in procs.items()},
                "pids": {r: p.ref.pid for r, p in procs.items() if p},
                "restarted": sorted(r for r, p in procs.items() if p and not p.recorded),
                "uuid": (view.uuid if view else "") or node.uuid,
                "onboarded": bool(view and view.registered),
                "trust": view.trust if view else "",
                "apps": dict(view.apps) if view else {},
                "app_errors": dict(view.app_errors) if view else {},
                "ports": _ports(view.ports if view else None),
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
            "process": "running" if ctl else "stopped",
            "pid": ctl.ref.pid if ctl else None,
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
            *[_process_cell(n, r) for r in roles],
            n["uuid"][:8] or "-",
            "yes" if n["onboarded"] else "no",
            n["trust"] or "-",
            _ports_cell(n["ports"]),
            ", ".join(f"{a}={st}" for a, st in sorted(n["apps"].items())) or "-",
        ]
        for n in status["nodes"]
    ]
    header = ["NODE", "IP", *[r.upper() for r in roles], "UUID", "ONBOARDED", "TRUST", "PORTS"]
    lines += ["", _table(rows, [*header, "APPS"])]
    if any(n["restarted"] for n in status["nodes"]):
        lines.append("* started by hand (not by outpost-lab up); down stops it too")
    return "\n".join(lines)


def _process_cell(node: dict[str, Any], role: str) -> str:
    state = node["processes"].get(role, "-")
    return f"{state}*" if role in node["restarted"] else state


def _ports_cell(ports: dict[str, Any]) -> str:
    if not ports["reported"]:
        return "not reported"
    if not ports["enforced"]:
        return "not enforced" + (f" ({ports['error'][:60]})" if ports["error"] else "")
    return f"enforced, {ports['open_ports']} open"
