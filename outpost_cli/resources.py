"""``outpost`` resource commands: get, describe, apply -f, delete, logs, node commands.

Output is a table by default, ``-o json`` or ``-o yaml`` for scripts.  ``apply`` takes
YAML documents ``{kind: App | Network | Node | Image, spec: {...}}`` (the spec is the
operator API's body) and is idempotent: each object is reported as created,
configured or unchanged.  Exit codes: 0 ok, 1 the
controller refused, 2 bad usage or file, 3 the controller is unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["add_resource_commands"]

PLURAL = {
    "node": "nodes",
    "app": "apps",
    "image": "images",
    "network": "networks",
    "pending": "pending",
    "event": "events",
}
COLUMNS = {
    "nodes": ["serial", "state", "uuid", "labels", "last_seen", "assigned_apps"],
    "apps": ["name", "kind", "image", "desired", "selector", "uuid"],
    "images": ["name", "format", "size", "sha256", "apps"],
    "networks": ["name", "subnet", "nat"],
    "pending": [
        "serial",
        "device_cert_sha256",
        "ek_sha256",
        "source",
        "attempts",
        "conflicts",
        "first_seen",
    ],
    "events": ["at", "node", "kind", "message"],
}


class UsageError(Exception):
    """Bad arguments or input file (exit code 2)."""


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return "-" if value is None or value == "" else str(value)


def emit(data: Any, output: str, columns: list[str] | None = None) -> None:
    if output == "json":
        print(json.dumps(data, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(data, sort_keys=False).rstrip())
    else:
        rows = data if isinstance(data, list) else [data]
        cols = columns or list(rows[0]) if rows else columns or []
        table = [[c.upper() for c in cols]] + [[_cell(r.get(c)) for c in cols] for r in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
        for r in table:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def cmd_get(c: Any, args: argparse.Namespace) -> None:
    kind = PLURAL.get(args.kind.rstrip("s"), args.kind) if args.kind != "pending" else "pending"
    if kind not in COLUMNS:
        raise UsageError(f"unknown kind {args.kind!r}: {', '.join(sorted(COLUMNS))}")
    if args.name:
        emit(c.call("GET", f"/{kind}/{args.name}"), args.output, COLUMNS[kind])
        return
    emit(c.call("GET", f"/{kind}")[kind], args.output, COLUMNS[kind])


def cmd_describe(c: Any, args: argparse.Namespace) -> None:
    kind = PLURAL.get(args.kind.rstrip("s"))
    if kind not in ("nodes", "apps"):
        raise UsageError("describe takes node or app")
    data = c.call("GET", f"/{kind}/{args.name}")
    if kind == "nodes":
        data["events"] = c.call("GET", f"/nodes/{args.name}/events")["events"][:20]
    emit(data, "yaml" if args.output == "table" else args.output)


def cmd_delete(c: Any, args: argparse.Namespace) -> None:
    kind = PLURAL.get(args.kind.rstrip("s"))
    if kind not in ("apps", "networks", "images", "nodes"):
        raise UsageError("delete takes app, network, image or node")
    c.call("DELETE", f"/{kind}/{args.name}")
    print(f"{kind[:-1]}/{args.name} deleted")


def _load_documents(path: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or d.get("kind") not in ("App", "Network", "Node", "Image"):
            raise UsageError(f"{path}: document {i + 1} needs kind: App, Network, Node or Image")
        if set(d) != {"kind", "spec"} or not isinstance(d["spec"], dict):
            raise UsageError(f"{path}: document {i + 1} must have exactly kind and spec")
    return docs


def _apply_one(c: Any, doc: dict[str, Any]) -> str:
    kind, body = doc["kind"], dict(doc["spec"])
    name = body.get("name") or body.get("serial")
    if kind == "App":
        current = {a["name"]: a for a in c.call("GET", "/apps")["apps"]}.get(name)
        if current is None:
            c.call("POST", "/apps", json=body)
            return f"app/{name} created"
        updated = c.call("PUT", f"/apps/{name}", json=body)
        return f"app/{name} {'unchanged' if updated == current else 'configured'}"
    if kind == "Network":
        have = {n["name"]: n for n in c.call("GET", "/networks")["networks"]}
        if name in have:
            if have[name] == {"nat": False, **body}:
                return f"network/{name} unchanged"
            raise UsageError(f"network/{name} exists with other settings; delete it first")
        c.call("POST", "/networks", json=body)
        return f"network/{name} created"
    if kind == "Image":
        have = {i["name"]: i for i in c.call("GET", "/images")["images"]}
        if name in have:
            same = all(have[name].get(k) == v for k, v in body.items())
            if same:
                return f"image/{name} unchanged"
            raise UsageError(f"image/{name} exists with other content; images are immutable")
        c.call("POST", "/images/register", json=body)
        return f"image/{name} created"
    serial = body.pop("serial", None) or name
    node = c.call("GET", f"/nodes/{serial}")
    patch = {k: body[k] for k in ("labels", "settings") if k in body}
    if all(node.get(k) == v for k, v in patch.items()):
        return f"node/{serial} unchanged"
    c.call("PATCH", f"/nodes/{serial}", json=patch)
    return f"node/{serial} configured"


def cmd_apply(c: Any, args: argparse.Namespace) -> None:
    for doc in _load_documents(args.file):
        print(_apply_one(c, doc))


def cmd_logs(c: Any, args: argparse.Namespace) -> None:
    params: dict[str, Any] = {"limit": args.limit}
    if args.source:
        params["source"] = args.source
    lines = c.call("GET", f"/nodes/{args.node}/logs", params=params)["lines"]
    if args.output != "table":
        emit(lines, args.output)
        return
    for line in lines:
        print(f"{line.get('ts', '')} [{line['source']}] {line.get('msg', '')}")


def cmd_command(c: Any, args: argparse.Namespace) -> None:
    body = {"command": args.command, "app": getattr(args, "app", None)}
    out = c.call("POST", f"/nodes/{args.node}/commands", json=body)
    print(
        f"{args.command} {args.node}{' ' + body['app'] if body['app'] else ''}: "
        f"counter {out['counter']}"
    )


def cmd_label(c: Any, args: argparse.Namespace) -> None:
    labels = dict(c.call("GET", f"/nodes/{args.node}")["labels"])
    for item in args.labels:
        key, sep, value = item.partition("=")
        if item.endswith("-") and not sep:
            labels.pop(item[:-1], None)
        elif sep:
            labels[key] = value
        else:
            raise UsageError(f"label {item!r}: use key=value, or key- to remove")
    c.call("PATCH", f"/nodes/{args.node}", json={"labels": labels})
    print(f"node/{args.node} labels: {_cell(labels)}")


def cmd_decide(c: Any, args: argparse.Namespace) -> None:
    c.call("POST", f"/pending/{args.serial}/{args.decision}")
    print(f"{args.serial}: {args.decision}d")


ADAPTER_COLUMNS = ["address", "kind", "vendor", "device", "driver", "iommu_group", "assignable"]
ADAPTER_COLUMNS += ["functions", "used_by", "reason"]


def cmd_adapters(c: Any, args: argparse.Namespace) -> None:
    """A node's PCI/GPU adapters and whether each can be passed through as a whole."""
    data = c.call("GET", f"/nodes/{args.node}/adapters")
    if args.output != "table":
        emit(data, args.output)
    elif not data["reported"]:
        print(f"{data['node']}: no PCI inventory reported yet")
    elif data["adapters"]:
        emit(data["adapters"], args.output, ADAPTER_COLUMNS)


def cmd_app_metrics(c: Any, args: argparse.Namespace) -> None:
    """What an app reports about itself, per node: latest values and labels."""
    data = c.call("GET", f"/apps/{args.app}/metrics", params={"since_s": args.since})
    if args.output != "table":
        emit(data, args.output)
        return
    rows = []
    for node in data["nodes"]:
        reported = node.get("reported") or {}
        rows.append(
            {
                "node": node["node"],
                **{k: v for k, v in sorted((reported.get("labels") or {}).items())},
                **{k: v for k, v in sorted((reported.get("values") or {}).items())},
                "points": len(node.get("series") or []),
            }
        )
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if rows:
        emit(rows, args.output, columns)
    else:
        print(f"{data['app']}: runs on no node")


def _output_option(parser: argparse.ArgumentParser) -> None:
    """-o after the subcommand too (kubectl's habit); the global one stays the default."""
    parser.add_argument(
        "-o", "--output", choices=("table", "json", "yaml"), default=argparse.SUPPRESS
    )


def add_resource_commands(sub: Any) -> None:
    s = sub.add_parser("get", help="list or show objects (nodes, apps, images, networks, …)")
    _output_option(s)
    s.add_argument("kind")
    s.add_argument("name", nargs="?")
    s.set_defaults(fn=cmd_get)
    s = sub.add_parser("describe", help="everything about a node or an app")
    _output_option(s)
    s.add_argument("kind", choices=("node", "app"))
    s.add_argument("name")
    s.set_defaults(fn=cmd_describe)
    s = sub.add_parser("delete", help="delete an app, network, image or claimed node")
    s.add_argument("kind")
    s.add_argument("name")
    s.set_defaults(fn=cmd_delete)
    s = sub.add_parser("apply", help="create or update objects from YAML (idempotent)")
    s.add_argument("-f", "--file", required=True, help="YAML file, '-' for stdin")
    s.set_defaults(fn=cmd_apply)
    s = sub.add_parser("logs", help="log lines a node sent")
    _output_option(s)
    s.add_argument("node")
    s.add_argument("--source")
    s.add_argument("--limit", type=int, default=200)
    s.set_defaults(fn=cmd_logs)
    s = sub.add_parser("reboot", help="reboot a node (once)")
    s.add_argument("node")
    s.set_defaults(fn=cmd_command, command="reboot")
    for name in ("restart", "purge"):
        s = sub.add_parser(name, help=f"{name} one app on a node (once)")
        s.add_argument("node")
        s.add_argument("app")
        s.set_defaults(fn=cmd_command, command=name)
    s = sub.add_parser("adapters", help="a node's PCI/GPU adapters (IOMMU groups, users)")
    _output_option(s)
    s.add_argument("node")
    s.set_defaults(fn=cmd_adapters)
    s = sub.add_parser("app-metrics", help="what an app reports about itself (fps, …)")
    _output_option(s)
    s.add_argument("app")
    s.add_argument("--since", type=int, default=3600, help="seconds of series (JSON/YAML)")
    s.set_defaults(fn=cmd_app_metrics)
    s = sub.add_parser("label", help="set (k=v) or remove (k-) node labels")
    s.add_argument("node")
    s.add_argument("labels", nargs="+")
    s.set_defaults(fn=cmd_label)
    for decision in ("approve", "reject"):
        s = sub.add_parser(decision, help=f"{decision} a pending node")
        s.add_argument("serial")
        s.set_defaults(fn=cmd_decide, decision=decision)
