"""``outpost site-policy …``: how the nodes of a site download and switch versions.

outpost site-policy set NAME [--selector k=v,…] [--group-by site] [--rate 20MB/s]
        [--download-window "0 1 * * *"] [--switch-window "0 3 * * 1-5"]
        [--time-zone Europe/Berlin] [--grace 3600] [--image-base-url URL] [--priority N]
outpost site-policy list
outpost site-policy delete NAME
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from outpost_cli.resources import UsageError, emit

__all__ = ["add_site_policy_commands", "parse_rate"]

_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_rate(text: str) -> float:
    """``20MB/s``, ``500kB/s``, ``8MiB/s``, ``100Mbit/s`` or plain bytes/s → bytes/s."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]i?)?(b|bit)?(?:/s)?", text.strip(), re.IGNORECASE)
    if m is None:
        raise UsageError(f"--rate {text!r}: e.g. 20MB/s, 500kB/s, 100Mbit/s")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    return value / 8 if (m.group(3) or "").lower() == "bit" else value


def _selector(text: str) -> dict[str, str]:
    out = {}
    for token in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = token.partition("=")
        if not sep:
            raise UsageError(f"--selector: {token!r} is not k=v")
        out[key] = value
    return out


def _window(cron: str | None, args: argparse.Namespace) -> dict[str, Any] | None:
    if cron is None:
        return None
    return {"cron": cron, "time_zone": args.time_zone, "grace_s": args.grace}


def cmd_set(c: Any, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {
        "priority": args.priority,
        "selector": _selector(args.selector or ""),
        "group_by": [g for g in (args.group_by or "site").split(",") if g],
        "download_rate_bps": parse_rate(args.rate) if args.rate else None,
        "download_window": _window(args.download_window, args),
        "switch_window": _window(args.switch_window, args),
        "image_base_url": args.image_base_url,
    }
    known = {p["name"] for p in c.call("GET", "/site-policies")["policies"]}
    if args.name in known:
        out = c.call("PUT", f"/site-policies/{args.name}", json=body)
    else:
        out = c.call("POST", "/site-policies", json={"name": args.name, **body})
    if args.output != "table":
        emit(out, args.output)
        return
    print(f"site policy {out['name']} set")


def _describe(w: dict[str, Any] | None) -> str:
    return f"{w['cron']} {w['time_zone']} +{w['grace_s']:g}s" if w else "-"


def cmd_list(c: Any, args: argparse.Namespace) -> None:
    rows = c.call("GET", "/site-policies")["policies"]
    if args.output != "table":
        emit(rows, args.output)
        return
    table = [
        {
            "name": p["name"],
            "priority": p["priority"],
            "selector": ",".join(f"{k}={v}" for k, v in p["selector"].items()) or "(all)",
            "group_by": ",".join(p["group_by"]),
            "rate": f"{p['download_rate_bps']:.0f} B/s" if p["download_rate_bps"] else "-",
            "download": _describe(p["download_window"]),
            "switch": _describe(p["switch_window"]),
            "datastore": p["image_base_url"] or "-",
        }
        for p in rows
    ]
    emit(table, "table", ["name", "priority", "selector", "group_by", "rate", "download",
                          "switch", "datastore"])  # fmt: skip


def cmd_delete(c: Any, args: argparse.Namespace) -> None:
    c.call("DELETE", f"/site-policies/{args.name}")
    print(f"site policy {args.name} deleted")


def add_site_policy_commands(sub: Any) -> None:
    p = sub.add_parser("site-policy", help="download caps and windows, switch windows per site")
    ps = p.add_subparsers(dest="site_policy_cmd", required=True)
    s = ps.add_parser("set", help="create or replace a site policy")
    s.add_argument("name")
    s.add_argument("--selector", help="k=v,… (device labels as device/k=v); default: all")
    s.add_argument("--group-by", help="labels sharing the rate cap (default: site)")
    s.add_argument("--rate", help="the group's total download rate, e.g. 20MB/s")
    s.add_argument("--download-window", metavar="CRON", help='e.g. "0 1 * * *"')
    s.add_argument("--switch-window", metavar="CRON", help='e.g. "0 3 * * 1-5"')
    s.add_argument("--time-zone", default="UTC")
    s.add_argument("--grace", type=float, default=3600.0, help="seconds a window stays open")
    s.add_argument("--image-base-url", help="a datastore nearer the site (<base>/sha256/<d>)")
    s.add_argument("--priority", type=int, default=0)
    s.set_defaults(fn=cmd_set)
    s = ps.add_parser("list", help="site policies in the order they win")
    s.add_argument("-o", "--output", choices=("table", "json", "yaml"), default=argparse.SUPPRESS)
    s.set_defaults(fn=cmd_list)
    s = ps.add_parser("delete", help="delete a site policy")
    s.add_argument("name")
    s.set_defaults(fn=cmd_delete)
