"""``outpost-lab``: a controller and a fleet of nodes on this machine.

  outpost-lab up --nodes 20 [--kind process|qemu] [--dir DIR] [--controller-port P]
  outpost-lab status
  outpost-lab deploy [--name hello --image busybox [--command ...] | --file app.yaml]
  outpost-lab down

Every command takes ``-o json``: its result as one JSON document on stdout (progress lines
go to stderr then; an error is {"error": "..."} on stdout too).

The lab dir (``--dir``, else ``$OUTPOST_LAB_DIR``, else /tmp/outpost-lab) holds the state
file, the controller's data, per-node logs and the operator CLI config (``cli.json``).
Exit status: 0 done, 1 failed (the message says why), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from lab.deploy import DEFAULT_COMMAND, IMAGES_DIR, app_body, deploy
from lab.down import down
from lab.errors import LabError, UsageError
from lab.spec import DEFAULT_PORT, lab_dir, parse_up
from lab.state import load_state
from lab.status import gather, render
from lab.up import up
from lab.watch import Progress

__all__ = ["main"]


def emit(args: argparse.Namespace, text: str, data: object) -> None:
    """The command's result: ``text`` for people, ``data`` as JSON with ``-o json``."""
    print(json.dumps(data, indent=2) if args.output == "json" else text)


def cmd_up(args: argparse.Namespace) -> int:
    req = parse_up(
        nodes=args.nodes,
        kind=args.kind,
        dir=lab_dir(args.dir),
        controller_port=args.controller_port,
        timeout_s=args.timeout,
        libvirt_uri=args.libvirt_uri,
        memory_mib=args.memory,
        vcpus=args.vcpus,
        accel=args.accel,
        image=args.image,
        open_ports=tuple(args.open_port),
    )
    progress = _progress(args)
    state = up(req, progress)
    took = progress.elapsed()
    text = "\n".join(
        [
            f"lab up in {took:.1f} s: {len(state.nodes)} {state.kind} nodes attested",
            f"  status:   outpost-lab status --dir {state.dir}",
            f"  operator: outpost --config {state.cli_config} nodes",
            f"  web UI:   {state.controller.url}/ui/ (admin; password in"
            f" {state.dir}/ui-admin-password)",
        ]
    )
    emit(
        args,
        text,
        {"took_s": round(took, 1), "lab": gather(state)} if args.output == "json" else None,
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    directory = lab_dir(args.dir)
    state = load_state(directory)
    if state is None:
        raise LabError(f"no lab in {directory}")
    status = gather(state)
    emit(args, render(status), status)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.file is None and args.name is None:
        args.name = "hello"
    if args.file is not None and (args.name or args.command):
        raise UsageError("give either --file or --name/--image/--command, not both")
    kind = args.kind or ("container" if args.image == "busybox" else "vm")
    body = app_body(args.name or "", args.image, args.command, args.file, kind)
    progress = _progress(args)
    views = deploy(lab_dir(args.dir), body, progress, args.timeout, args.images_dir)
    if args.output == "json":
        name = body["name"]
        nodes = {n: {"state": v.apps.get(name, ""), "uuid": v.uuid} for n, v in views.items()}
        emit(args, "", {"app": name, "took_s": round(progress.elapsed(), 1), "nodes": nodes})
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    directory = lab_dir(args.dir)
    report = down(directory, _progress(args))
    if args.output == "json":
        emit(args, "", {"dir": str(directory), **dataclasses.asdict(report)})
    elif not report.found:
        print(f"no lab in {directory}: nothing to do")
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


def _progress(args: argparse.Namespace) -> Progress:
    """Progress lines: on stdout, or on stderr when stdout carries JSON."""
    return Progress(sys.stderr if args.output == "json" else sys.stdout)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="outpost-lab",
        description="A controller and a fleet of nodes on this machine.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dir", help="lab dir (default $OUTPOST_LAB_DIR or /tmp/outpost-lab)")
        p.add_argument(
            "-o", "--output", choices=("text", "json"), default="text",
            help="json: the result as JSON on stdout (progress on stderr)",
        )  # fmt: skip
        return p

    p = add("up", "start a controller and N nodes; wait until all are attested")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--kind", choices=("process", "qemu"), default="process")
    p.add_argument("--controller-port", type=int, default=DEFAULT_PORT)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for attestation")
    p.add_argument("--libvirt-uri", default="qemu:///system", help="process nodes' libvirt")
    p.add_argument("--memory", type=int, default=1024, help="qemu nodes: MiB per node")
    p.add_argument("--vcpus", type=int, default=2, help="qemu nodes: vCPUs per node")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="tcg", help="qemu nodes")
    p.add_argument("--image", type=Path, help="qemu nodes: node image (build/node/…qcow2)")
    p.add_argument(
        "--open-port",
        type=int,
        action="append",
        default=[],
        metavar="PORT",
        help="process nodes may reach this lab-host port (a datastore, a site cache)",
    )
    p.set_defaults(fn=cmd_up)

    p = add("status", "show the lab's processes and nodes")
    p.add_argument("--json", action="store_const", const="json", dest="output", help="-o json")
    p.set_defaults(fn=cmd_status)

    p = add("deploy", "run an app on every lab node and wait until it is RUNNING everywhere")
    p.add_argument("--file", type=Path, help="app definition (YAML/JSON, operator API body)")
    p.add_argument("--name", help="app name (default hello)")
    p.add_argument("--image", default="busybox", help="image name (default busybox)")
    p.add_argument("--kind", choices=("container", "vm"))
    p.add_argument("--command", nargs="+", help=f"container command (default {DEFAULT_COMMAND})")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--images-dir", type=Path, default=IMAGES_DIR)
    p.set_defaults(fn=cmd_deploy)

    p = add("down", "stop and remove everything the lab made (idempotent)")
    p.set_defaults(fn=cmd_down)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except UsageError as exc:
        return _fail(args, str(exc), 2)
    except LabError as exc:
        return _fail(args, str(exc), 1)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", 130)


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    print(f"error: {message}" if code != 130 else message, file=sys.stderr)
    if args.output == "json":
        print(json.dumps({"error": message, "exit_code": code}))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
