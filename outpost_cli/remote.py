"""``outpost console | exec | shell | port-forward | grants | sessions``: remote access.

    outpost console NODE APP                    a VM's serial console (Ctrl-] leaves)
    outpost exec NODE APP [-t] [-i] -- CMD …    a command in a container: its output, and
                                                its exit code as this command's
    outpost shell NODE                          a root shell on the node (admin; the node's
                                                settings must allow debug access)
    outpost port-forward NODE APP LOCAL:REMOTE  127.0.0.1:LOCAL → the app's port REMOTE
    outpost grants [list|create|approve|revoke] outpost sessions [list|replay|download|revoke]

Each session needs a grant: unless ``--grant`` names one, the command asks for one
(``reuse``: a live grant of yours for the same thing is used again).  A grant that waits
for a second person's approval is reported with the command to approve it.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from outpost_cli.resources import UsageError, emit

__all__ = ["add_remote_commands"]


class _Failed(Exception):
    pass


def _grant(c: Any, args: argparse.Namespace, kind: str, app: str | None, port: int | None) -> str:
    if getattr(args, "grant", None):
        return str(args.grant)
    body: dict[str, Any] = {
        "node": args.node,
        "kind": kind,
        "duration_s": args.duration,
        "reuse": True,
    }
    if app:
        body["app"] = app
    if port is not None:
        body["port"] = port
    grant = c.call("POST", "/remote/grants", json=body)
    if grant["state"] == "awaiting-approval":
        raise _Failed(
            f"grant {grant['id']} waits for a second person's approval "
            f"(outpost grants approve {grant['id']}); run again with --grant {grant['id']}"
        )
    return str(grant["id"])


def _terminal_size() -> tuple[int, int]:
    import os

    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return 80, 24
    return (size.columns or 80, size.lines or 24)  # a new pty may say 0x0


def _report(outcome: Any, quiet_reason: str = "") -> None:
    if outcome.error:
        print(f"\r\nsession refused or failed: {outcome.error}", file=sys.stderr)
    elif outcome.reason and outcome.reason != quiet_reason and outcome.exit_code is None:
        print(f"\r\nsession closed: {outcome.reason}", file=sys.stderr)


def _interactive(
    c: Any, args: argparse.Namespace, kind: str, app: str | None, command: list[str]
) -> int:
    from outpost_cli.remote_stream import RelayLost, open_session, run_terminal

    grant = _grant(c, args, kind, app, None)
    cols, rows = _terminal_size()
    body = {"grant": grant, "command": command, "tty": True, "cols": cols, "rows": rows}
    _view, ws = open_session(c.call, c.url, c.verify, body)
    if kind == "console":
        print("Connected to the console; Ctrl-] leaves.\r", file=sys.stderr)
    try:
        outcome = run_terminal(ws)
    except RelayLost as exc:
        print(f"\r\n{exc}", file=sys.stderr)
        return 1
    _report(outcome, "left with Ctrl-]")
    if outcome.error:
        return 1
    return outcome.exit_code or 0


def cmd_console(c: Any, args: argparse.Namespace) -> None:
    raise SystemExit(_interactive(c, args, "console", args.app, []))


def cmd_shell(c: Any, args: argparse.Namespace) -> None:
    raise SystemExit(_interactive(c, args, "shell", None, []))


def cmd_exec(c: Any, args: argparse.Namespace) -> None:
    from outpost_cli.remote_stream import RelayLost, open_session, run_command

    command = [a for a in args.command if a != "--"] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("give the command after --, e.g. outpost exec NODE APP -- uname -a")
    if args.tty:
        raise SystemExit(_interactive(c, args, "exec", args.app, command))
    grant = _grant(c, args, "exec", args.app, None)
    body = {"grant": grant, "command": command, "tty": False}
    _view, ws = open_session(c.call, c.url, c.verify, body)
    try:
        outcome = run_command(ws, sys.stdin.buffer if args.stdin else None)
    except RelayLost as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(1) from exc
    if outcome.error:
        print(f"exec refused or failed: {outcome.error}", file=sys.stderr)
        raise SystemExit(1)
    if outcome.exit_code is None:
        print(f"exec ended without an exit code: {outcome.reason}", file=sys.stderr)
        raise SystemExit(1)
    raise SystemExit(outcome.exit_code if 0 <= outcome.exit_code <= 255 else 1)


def _parse_ports(text: str) -> tuple[int, int]:
    local, sep, remote = text.partition(":")
    try:
        ports = (int(local), int(remote)) if sep else (int(text), int(text))
    except ValueError as exc:
        raise UsageError(f"{text!r}: give LOCAL:REMOTE ports, e.g. 8080:80") from exc
    if not all(1 <= p <= 65535 for p in ports) and ports[0] != 0:
        raise UsageError(f"{text!r}: ports are 1-65535 (LOCAL may be 0: any free port)")
    return ports


def cmd_port_forward(c: Any, args: argparse.Namespace) -> None:
    from outpost_cli.remote_stream import open_session, pump_socket

    local, remote = _parse_ports(args.ports)
    grant = _grant(c, args, "forward", args.app, remote)
    listener = socket.create_server((args.address, local), reuse_port=False)
    bound = listener.getsockname()[1]
    print(
        f"Forwarding {args.address}:{bound} -> {args.node}/{args.app}:{remote} (grant {grant});"
        " Ctrl-C stops.",
        flush=True,
    )
    if args.ready_file:
        Path(args.ready_file).write_text(json.dumps({"port": bound, "grant": grant}))

    def serve(conn: socket.socket) -> None:
        try:
            _view, ws = open_session(c.call, c.url, c.verify, {"grant": grant, "port": remote})
        except Exception as exc:  # the controller refused (caps, grant) or is away
            print(f"connection refused: {exc}", file=sys.stderr, flush=True)
            conn.close()
            return
        outcome = pump_socket(ws, conn)
        if outcome.error:
            print(f"connection failed: {outcome.error}", file=sys.stderr, flush=True)

    try:
        while True:
            conn, _addr = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()


# -- grants and sessions -----------------------------------------------------------------


def cmd_grants(c: Any, args: argparse.Namespace) -> None:
    action = args.action
    if action == "list":
        data = c.call("GET", "/remote/grants", params={"live": "1"} if args.live else None)
        rows = data["grants"]
        if args.output != "table":
            emit(rows, args.output)
            return
        for g in rows:
            what = g["app"] or "(node)"
            port = f":{g['port']}" if g["port"] else ""
            print(
                f"{g['id']}  {g['state']:<17} {g['kind']:<8} {g['node']}/{what}{port}  "
                f"{g['grantee']}  until {g['expires_at']}"
            )
        return
    if action == "create":
        body: dict[str, Any] = {"node": args.node, "kind": args.kind, "duration_s": args.duration}
        for key in ("app", "grantee", "port", "reason"):
            if getattr(args, key, None):
                body[key] = getattr(args, key)
        emit(
            c.call("POST", "/remote/grants", json=body),
            "json" if args.output == "table" else args.output,
        )
        return
    if not args.id:
        raise UsageError(f"grants {action} needs the grant id")
    emit(
        c.call("POST", f"/remote/grants/{args.id}/{action}"),
        "json" if args.output == "table" else args.output,
    )


def _replay(text: str, speed: float, out: Any) -> None:
    lines = text.splitlines()
    last = 0.0
    for line in lines[1:]:
        try:
            at, code, data = json.loads(line)
        except (ValueError, TypeError):
            continue
        if code != "o":
            continue
        if speed > 0:
            time.sleep(min(max(0.0, float(at) - last), 1.0) / speed)
        last = float(at)
        out.write(data)
        out.flush()


def cmd_sessions(c: Any, args: argparse.Namespace) -> None:
    action = args.action
    if action == "list":
        params = {"live": "1"} if args.live else {}
        if args.node:
            params["node"] = args.node
        rows = c.call("GET", "/remote/sessions", params=params)["sessions"]
        if args.output != "table":
            emit(rows, args.output)
            return
        for s in rows:
            what = s["app"] or "(node)"
            print(
                f"{s['id']}  {s['state']:<7} {s['kind']:<8} {s['node']}/{what}  {s['actor']}  "
                f"{s['created_at']}  {s['bytes_to_node']}/{s['bytes_from_node']} B  "
                f"{s['end_reason'] or ''}"
            )
        return
    if not args.id:
        raise UsageError(f"sessions {action} needs the session id")
    if action in ("replay", "download"):
        resp = c.raw("GET", f"/remote/sessions/{args.id}/recording")
        if resp.status >= 400:
            raise UsageError(f"{resp.status}: {resp.text[:300]}")
        if action == "download":
            target = Path(args.out or f"session-{args.id}.cast")
            target.write_bytes(resp.body)
            print(f"saved {target} ({len(resp.body)} bytes, asciicast v2)")
        else:
            _replay(resp.text, args.speed, sys.stdout)
        return
    emit(
        c.call("POST", f"/remote/sessions/{args.id}/close"),
        "json" if args.output == "table" else args.output,
    )


def _with_failures(fn: Any) -> Any:
    def run(c: Any, args: argparse.Namespace) -> None:
        try:
            fn(c, args)
        except _Failed as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(4) from exc

    return run


def add_remote_commands(sub: Any) -> None:
    def grant_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--grant", help="use this grant (default: ask for one)")
        p.add_argument("--duration", type=int, default=3600, help="seconds a new grant lasts")

    s = sub.add_parser("console", help="a VM app's serial console (Ctrl-] leaves)")
    s.add_argument("node")
    s.add_argument("app")
    grant_flags(s)
    s.set_defaults(fn=_with_failures(cmd_console))
    s = sub.add_parser("exec", help="run a command in a container app; its exit code is ours")
    s.add_argument("node")
    s.add_argument("app")
    s.add_argument("-t", "--tty", action="store_true", help="on a terminal (interactive)")
    s.add_argument("-i", "--stdin", action="store_true", help="send this stdin to the command")
    grant_flags(s)
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.set_defaults(fn=_with_failures(cmd_exec))
    s = sub.add_parser("shell", help="a root shell on the node (admin, debug access only)")
    s.add_argument("node")
    grant_flags(s)
    s.set_defaults(fn=_with_failures(cmd_shell))
    s = sub.add_parser("port-forward", help="forward a local port to an app's port")
    s.add_argument("node")
    s.add_argument("app")
    s.add_argument("ports", help="LOCAL:REMOTE (LOCAL 0: any free port)")
    s.add_argument("--address", default="127.0.0.1", help="local address to listen on")
    s.add_argument("--ready-file", help=argparse.SUPPRESS)
    grant_flags(s)
    s.set_defaults(fn=_with_failures(cmd_port_forward))

    s = sub.add_parser("grants", help="remote-access grants: list, create, approve, revoke")
    s.add_argument(
        "action", nargs="?", default="list", choices=("list", "create", "approve", "revoke")
    )
    s.add_argument("id", nargs="?")
    s.add_argument("--live", action="store_true")
    s.add_argument("--node")
    s.add_argument("--kind", choices=("console", "exec", "shell", "forward"))
    s.add_argument("--app")
    s.add_argument("--port", type=int)
    s.add_argument("--grantee", help="user:<name> or token:<name> (default: you)")
    s.add_argument("--reason")
    s.add_argument("--duration", type=int, default=3600)
    s.set_defaults(fn=cmd_grants)
    s = sub.add_parser("sessions", help="remote sessions: list, replay, download, revoke")
    s.add_argument(
        "action", nargs="?", default="list", choices=("list", "replay", "download", "revoke")
    )
    s.add_argument("id", nargs="?")
    s.add_argument("--live", action="store_true")
    s.add_argument("--node")
    s.add_argument("--speed", type=float, default=1.0, help="replay speed (0: no delays)")
    s.add_argument("--out", help="download: the file to write")
    s.set_defaults(fn=cmd_sessions)
