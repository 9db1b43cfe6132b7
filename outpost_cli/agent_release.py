"""``outpost agent-release build|upload|list|set``: publish agent releases and point
nodes at them (self-update; docs/architecture.md, "Agent self-update")."""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from outpost_cli.resources import UsageError

__all__ = ["add_agent_release_commands"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cmd_build(c: Any, args: argparse.Namespace) -> None:
    from attestation.measurement import code_digest  # here: `outpost --help` stays fast
    from protocol import agent_bundle

    out = Path(args.out or f"outpost-agent-{args.version}.tar.gz")
    try:
        agent_bundle.build(args.version, out, Path(args.source) if args.source else None)
        with tempfile.TemporaryDirectory(prefix="outpost-agent-bundle-") as tmp:
            agent_bundle.unpack(out, Path(tmp) / "bundle")
            digest = code_digest(Path(tmp) / "bundle" / p for p in agent_bundle.PACKAGES)
    except (agent_bundle.BundleError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    print(f"{out}  version {args.version}  sha256:{_sha256(out)}  code digest {digest}")


def cmd_upload(c: Any, args: argparse.Namespace) -> None:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    with path.open("rb") as fh:
        rel = c.call(
            "POST",
            "/agent-releases",
            params={"version": args.version, "sha256": _sha256(path)},
            data=fh,
            headers={"Content-Type": "application/gzip"},
        )
    print(f"agent release {rel['version']} sha256:{rel['sha256']} code digest {rel['code_digest']}")


def cmd_list(c: Any, args: argparse.Namespace) -> None:
    releases = c.call("GET", "/agent-releases")["releases"]
    if args.output == "json":
        print(json.dumps(releases, indent=2))
        return
    rows = [["VERSION", "SIZE", "SHA256", "NODES"]] + [
        [r["version"], str(r["size"]), r["sha256"][:16], ",".join(r["nodes"]) or "-"]
        for r in releases
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def cmd_set(c: Any, args: argparse.Namespace) -> None:
    version = None if args.version == "none" else args.version
    body: dict[str, Any] = {"version": version}
    if args.accept_baseline:
        body["accept_baseline"] = True
    out = c.call("PUT", f"/nodes/{args.node}/agent-release", json=body)
    target = out["agent"]
    print(f"{out['serial']}: agent release {target['version'] if target else 'none'}")


def add_agent_release_commands(sub: Any) -> None:
    p = sub.add_parser("agent-release", help="build, upload, list and assign agent releases")
    rsub = p.add_subparsers(dest="release_cmd", required=True)
    s = rsub.add_parser("build", help="make a release bundle from the installed agent code")
    s.add_argument("version", help="MAJOR.MINOR.PATCH[-tag]")
    s.add_argument("--out", help="tarball to write (default outpost-agent-VERSION.tar.gz)")
    s.add_argument("--source", help="directory holding node_agent, attestation, protocol")
    s.set_defaults(fn=cmd_build, offline=True)
    s = rsub.add_parser("upload", help="upload a release bundle to the controller")
    s.add_argument("file")
    s.add_argument("--version", required=True)
    s.set_defaults(fn=cmd_upload)
    rsub.add_parser("list", help="list releases and the nodes targeting each").set_defaults(
        fn=cmd_list
    )
    s = rsub.add_parser("set", help="the release a node should run ('none': keep its own)")
    s.add_argument("node", help="serial or uuid")
    s.add_argument("version")
    s.add_argument(
        "--accept-baseline",
        action="store_true",
        help="add the release's code digest to the node's attestation baseline (audited)",
    )
    s.set_defaults(fn=cmd_set)
