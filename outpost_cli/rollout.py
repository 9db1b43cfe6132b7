"""``outpost rollout …`` and ``outpost git …``: staged rollouts and the git source.

outpost rollout start -f app.yaml --ring qa:site=qa --ring prod:site=prod,approval
        [--soak S] [--deadline S]         ring: [NAME:]k=v,…  |  N%  |  rest; ",approval"
        [--batch N|N%] [--success P]      batches within every ring, P % healthy each
        [--budget site:max=1] [--budget site:min=2]   per label group (k[,k]:max=N|min=N)
outpost rollout status [ID]               a table of rollouts, or one with its rings/nodes
outpost rollout approve|pause|resume|rollback ID
outpost git set URL [--branch B] [--path P] [--interval S] [--allowed-signers F] | status | sync
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

from outpost_cli.resources import UsageError, emit

__all__ = ["add_rollout_commands", "parse_batch", "parse_budget", "parse_ring"]


def parse_ring(text: str, soak_s: float | None, deadline_s: float | None) -> dict[str, Any]:
    """``[NAME:]k=v,k=v[,approval]`` | ``[NAME:]N%`` | ``[NAME:]rest`` → a ring body."""
    name, sep, rest = text.partition(":")
    if not sep:
        name, rest = "", text
    ring: dict[str, Any] = {"name": name} if name else {}
    selector: dict[str, str] = {}
    for token in filter(None, (t.strip() for t in rest.split(","))):
        if token == "approval":
            ring["approval"] = True
        elif token == "rest":
            continue
        elif m := re.fullmatch(r"(\d{1,3})%", token):
            ring["percent"] = int(m.group(1))
        elif "=" in token:
            key, _, value = token.partition("=")
            selector[key] = value
        else:
            raise UsageError(f"ring {text!r}: {token!r} is not k=v, N%, rest or approval")
    if selector:
        ring["selector"] = selector
    if soak_s is not None:
        ring["soak_s"] = soak_s
    if deadline_s is not None:
        ring["deadline_s"] = deadline_s
    return ring


def parse_batch(text: str | None, success: int | None) -> dict[str, Any] | None:
    """``N`` | ``N%`` (and a success threshold) → a ring's ``batches``."""
    if text is None:
        if success is not None:
            raise UsageError("--success needs --batch")
        return None
    if m := re.fullmatch(r"(\d{1,3})%", text):
        batch: dict[str, Any] = {"percent": int(m.group(1))}
    elif text.isdigit():
        batch = {"count": int(text)}
    else:
        raise UsageError(f"--batch {text!r}: a count (5) or a percent (25%)")
    if success is not None:
        batch["success_threshold_pct"] = success
    return batch


def parse_budget(text: str) -> dict[str, Any]:
    """``k[,k]:max=N`` | ``k[,k]:min=N`` (both: ``k:max=1,min=2``) → a budget."""
    keys, sep, limits = text.partition(":")
    if not sep or not keys:
        raise UsageError(f"--budget {text!r}: LABEL[,LABEL]:max=N|min=N")
    budget: dict[str, Any] = {"group_by": [k.strip() for k in keys.split(",") if k.strip()]}
    for token in filter(None, (t.strip() for t in limits.split(","))):
        name, _, value = token.partition("=")
        if name not in ("max", "min") or not value.isdigit():
            raise UsageError(f"--budget {text!r}: {token!r} is not max=N or min=N")
        budget["max_updating" if name == "max" else "min_healthy"] = int(value)
    if len(budget) == 1:
        raise UsageError(f"--budget {text!r}: give max=N (updating) or min=N (healthy)")
    return budget


def _app_spec(path: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    if isinstance(doc, dict) and doc.get("kind") == "App" and isinstance(doc.get("spec"), dict):
        return dict(doc["spec"])
    if isinstance(doc, dict) and "kind" in doc and "name" in doc:
        return doc
    raise UsageError(f"{path}: needs an App document (kind: App, spec: {{…}})")


def cmd_start(c: Any, args: argparse.Namespace) -> None:
    rings = [parse_ring(r, args.soak, args.deadline) for r in args.ring]
    batch = parse_batch(args.batch, args.success)
    if batch is not None:
        rings = [{**ring, "batches": batch} for ring in rings]
    body: dict[str, Any] = {"app": _app_spec(args.file), "rings": rings}
    if args.budget:
        body["budgets"] = [parse_budget(b) for b in args.budget]
    out = c.call("POST", "/rollouts", json=body)
    if args.output != "table":
        emit(out, args.output)
        return
    print(f"rollout {out['id']} of {out['app']}: {out['state']} ({len(rings)} rings)")


def _show(out: dict[str, Any], output: str) -> None:
    if output != "table":
        emit(out, output)
        return
    print(f"rollout {out['id']}  app {out['app']}  {out['state']}  ring {out['ring'] + 1}")
    print(f"from {out['from']['image']} → {out['to']['image']}")
    if out.get("expected_completion_at"):
        print(f"expected to finish: {out['expected_completion_at']}")
    for budget in out.get("budgets") or []:
        limits = [f"max {budget['max_updating']} updating"] if budget.get("max_updating") else []
        if budget.get("min_healthy") is not None:
            limits.append(f"min {budget['min_healthy']} healthy")
        print(f"budget per {','.join(budget['group_by'])}: {', '.join(limits)}")
    if out.get("reason"):
        print(f"reason: {out['reason']}")
    rows = []
    for ring in out["rings"]:
        nodes = ring["nodes"] or [{"serial": "-", "state": "", "restarts": 0}]
        for n in nodes:
            rows.append(
                {
                    "ring": ring.get("name") or ring["index"] + 1,
                    "status": ring["status"],
                    "approval": "yes" if ring.get("approval") else "-",
                    "batch": n["batch"] + 1 if "batch" in n else "-",
                    "node": n["serial"],
                    "phase": n.get("phase") or "-",
                    "state": n.get("state") or "-",
                    "health": n.get("health") or "-",
                    "restarts": n.get("restarts", 0),
                    "waiting": n.get("waiting") or n.get("error") or "",
                }
            )
    columns = ["ring", "status", "approval", "batch", "node", "phase", "state", "health"]
    emit(rows, "table", [*columns, "restarts", "waiting"])


def cmd_status(c: Any, args: argparse.Namespace) -> None:
    if args.id is None:
        rows = c.call("GET", "/rollouts")["rollouts"]
        emit(rows, args.output, ["id", "app", "state", "ring", "ring_phase", "updated_at"])
        return
    _show(c.call("GET", f"/rollouts/{args.id}"), args.output)


def cmd_act(c: Any, args: argparse.Namespace) -> None:
    body = {"ring": args.ring} if getattr(args, "ring", None) is not None else None
    out = c.call("POST", f"/rollouts/{args.id}/{args.action}", json=body or {})
    if args.output != "table":
        emit(out, args.output)
        return
    print(f"rollout {out['id']} of {out['app']}: {out['state']}")


def cmd_git_set(c: Any, args: argparse.Namespace) -> None:
    body = {
        "url": args.repo_url,
        "branch": args.branch,
        "path": args.path,
        "interval_s": args.interval,
    }
    if args.allowed_signers:
        try:
            body["allowed_signers"] = Path(args.allowed_signers).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {args.allowed_signers}: {exc.strerror}") from exc
        body["verify_signatures"] = True
    out = c.call("PUT", "/git/source", json=body)
    if args.output != "table":
        emit(out, args.output)
        return
    signed = ", signed commits only" if out.get("verify_signatures") else ""
    print(f"following {out['url']} ({out['branch']}) every {out['interval_s']} s{signed}")


def cmd_git_status(c: Any, args: argparse.Namespace) -> None:
    out = c.call("GET", "/git/source")
    if args.output != "table":
        emit(out, args.output)
        return
    print(f"source:    {out['url']} ({out['branch']}{', ' + out['path'] if out['path'] else ''})")
    print(f"revision:  {out['revision'] or '-'}  (synced {out['synced_at'] or 'never'})")
    for e in out["errors"]:
        print(f"refused {out['error_revision'][:12]}: {e['file']}:{e['line']}: {e['reason']}")
    emit(out["nodes"] or [{"serial": "-"}], "table", ["serial", "generation", "revision"])


def cmd_git_sync(c: Any, args: argparse.Namespace) -> None:
    out = c.call("POST", "/git/sync")
    if args.output != "table":
        emit(out, args.output)
        return
    what = "applied" if out["applied"] else "up to date"
    print(f"{out['revision'][:12]} {what}")
    for line in out["changes"]:
        print(f"  {line}")


def _out(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default=argparse.SUPPRESS)


def add_rollout_commands(sub: Any) -> None:
    r = sub.add_parser("rollout", help="staged rollouts of an app version through rings")
    rs = r.add_subparsers(dest="rollout_cmd", required=True)
    s = rs.add_parser("start", help="roll a new app version out ring by ring")
    s.add_argument("-f", "--file", required=True, help="the app's new definition (YAML)")
    s.add_argument("--ring", action="append", required=True, help="[NAME:]k=v,…|N%%|rest")
    s.add_argument("--soak", type=float, help="seconds RUNNING without restart per ring")
    s.add_argument("--deadline", type=float, help="seconds a node may take to get healthy")
    s.add_argument("--batch", help="batches within each ring: a count (5) or a percent (25%%)")
    s.add_argument("--success", type=int, help="percent of a batch that must be healthy")
    s.add_argument("--budget", action="append", default=[],
                   help="disruption budget per label group: site:max=1 | site:min=2")  # fmt: skip
    s.set_defaults(fn=cmd_start)
    s = rs.add_parser("status", help="list rollouts or show one")
    _out(s)
    s.add_argument("id", nargs="?", type=int)
    s.set_defaults(fn=cmd_status)
    for action in ("approve", "pause", "resume", "rollback"):
        s = rs.add_parser(action, help=f"{action} a rollout")
        s.add_argument("id", type=int)
        if action == "approve":
            s.add_argument("--ring", type=int, help="ring index (default: the one waiting)")
        s.set_defaults(fn=cmd_act, action=action)

    gp = sub.add_parser("git", help="the git source of site manifests")
    gs = gp.add_subparsers(dest="git_cmd", required=True)
    s = gs.add_parser("set", help="follow a repository (local path or URL)")
    s.add_argument("repo_url", metavar="URL", help="a local path or a URL git can fetch")
    s.add_argument("--branch", default="main")
    s.add_argument("--path", default="", help="sub-folder holding sites/")
    s.add_argument("--interval", type=int, default=60, help="seconds between syncs (0: off)")
    s.add_argument(
        "--allowed-signers",
        metavar="FILE",
        help="apply only commits signed by these ssh keys (git's allowed-signers format)",
    )
    s.set_defaults(fn=cmd_git_set)
    s = gs.add_parser("status", help="revision in force, last error, each node's revision")
    _out(s)
    s.set_defaults(fn=cmd_git_status)
    gs.add_parser("sync", help="fetch and apply now").set_defaults(fn=cmd_git_sync)
