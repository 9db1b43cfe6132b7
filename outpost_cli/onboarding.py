"""``outpost claim`` (pinned to the node's fingerprints), ``outpost import-nodes`` (bulk
enrolment from a manufacturing manifest) and ``outpost batches`` / ``outpost
revoke-batch`` (onboarding batches).

A claim names the node's serial and the fingerprints ``outpost-agent identity`` prints
on the node (``--device-cert``, and ``--ek`` for its TPM): only that identity may
register.  ``outpost get pending`` shows the fingerprints of nodes waiting for approval;
``outpost approve SERIAL`` pins exactly those.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from outpost_cli.resources import UsageError, emit

__all__ = ["add_onboarding_commands"]

BATCH_COLUMNS = ["name", "cert_sha256", "created_at", "created_by", "registered_nodes"]
BATCH_COLUMNS += ["revoked", "revoked_reason"]


def cmd_claim(c: Any, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"serial": args.serial}
    if args.device_cert:
        body["device_cert_sha256"] = args.device_cert
    if args.ek:
        body["ek_sha256"] = args.ek
    n = c.call("POST", "/nodes/claim", json=body)
    if args.output != "table":
        emit(n, args.output)
        return
    pinned = "pinned to its fingerprints" if args.device_cert or args.ek else "unpinned"
    print(f"claimed {n['serial']} ({n['state']}, {pinned})")


def cmd_import_nodes(c: Any, args: argparse.Namespace) -> None:
    path = Path(args.manifest)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    with path.open("rb") as fh:
        out = c.call("POST", "/nodes/import", data=fh, headers={"Content-Type": "text/csv"})
    if args.output != "table":
        emit(out, args.output)
        return
    print(
        f"imported {path.name}: {out['created']} nodes registered,"
        f" {out['registered_claims']} claimed serials registered,"
        f" {out['unchanged']} already registered as listed"
    )


def cmd_batches(c: Any, args: argparse.Namespace) -> None:
    emit(c.call("GET", "/onboarding/batches")["batches"], args.output, BATCH_COLUMNS)


def cmd_revoke_batch(c: Any, args: argparse.Namespace) -> None:
    out = c.call("POST", f"/onboarding/batches/{args.name}/revoke", json={"reason": args.reason})
    if args.output != "table":
        emit(out["batches"], args.output)
        return
    print(f"onboarding batch {args.name} revoked: its certificate registers no node any more")


def add_onboarding_commands(sub: Any) -> None:
    s = sub.add_parser(
        "claim", help="claim a serial, pinned to the node's fingerprints, so it may onboard"
    )
    s.add_argument("serial")
    s.add_argument(
        "--device-cert",
        metavar="SHA256",
        help="the node's device-cert-sha256 (outpost-agent identity, the node's console)",
    )
    s.add_argument("--ek", metavar="SHA256", help="the node's ek-cert-sha256 (its TPM)")
    s.set_defaults(fn=cmd_claim)
    s = sub.add_parser(
        "import-nodes",
        help="bulk enrolment: register every node of a CSV manifest"
        " (serial,device_cert[,ek_cert]), all rows or none",
    )
    s.add_argument("manifest", help="CSV file; certificates as base64 DER or quoted PEM")
    s.set_defaults(fn=cmd_import_nodes)
    sub.add_parser("batches", help="onboarding batches issued and whether revoked").set_defaults(
        fn=cmd_batches
    )
    s = sub.add_parser(
        "revoke-batch", help="revoke an onboarding batch: its bundle registers no node any more"
    )
    s.add_argument("name")
    s.add_argument("--reason", required=True)
    s.set_defaults(fn=cmd_revoke_batch)
