"""The operator's side of a remote session: open it, attach over WebSocket, relay.

    open_session(call, url, ca, body)   → (view, connection): POST /remote/sessions, then
                                           the WebSocket with the one-time ticket
    run_terminal(ws)                    a console, shell or ``exec -t`` on this terminal
                                        (raw mode, window size, Ctrl-] leaves)
    run_command(ws, stdin)              ``exec`` without a tty: output to stdout/stderr,
                                        the command's exit code
    pump_socket(ws, sock)               one forwarded TCP connection

A connection that breaks without the controller's ``closed`` message raises
:class:`RelayLost`: the controller process relaying the session went away; the session is
over and its recording is kept up to that moment.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from protocol.remote import (
    STDERR,
    STDIN,
    Closed,
    Eof,
    ErrorMessage,
    Exit,
    Resize,
    data_frame,
    parse_control,
    split_frame,
)
from protocol.websocket_client import connect_websocket

__all__ = [
    "DETACH",
    "Outcome",
    "RelayLost",
    "SessionRefused",
    "attach",
    "open_session",
    "pump_socket",
    "receive",
    "run_command",
    "run_terminal",
]

DETACH = b"\x1d"
"""Ctrl-]: leave a console (as ``virsh console``)."""
LOST = (
    "the connection to the controller broke: the controller process relaying this session "
    "stopped; the session is over (its recording is kept up to this moment)"
)


class RelayLost(Exception):
    """The stream ended without the controller's word (its relay went away)."""


class SessionRefused(Exception):
    """The node or the controller refused or ended the session with a reason."""


class Outcome:
    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.reason = ""
        self.error = ""


def ws_url(base_url: str, path: str) -> str:
    scheme, _, rest = base_url.rstrip("/").partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.split('/', 1)[0]}{path}"


def attach(base_url: str, verify: str | bool, path: str, ticket: str) -> ClientConnection:
    ws = connect_websocket(
        ws_url(base_url, path),
        verify if isinstance(verify, str) else None,
        open_timeout=20,
    )
    ws.send(json.dumps({"ticket": ticket}))
    return ws


def open_session(
    call: Callable[..., Any], base_url: str, verify: str | bool, body: dict[str, Any]
) -> tuple[dict[str, Any], ClientConnection]:
    view = call("POST", "/remote/sessions", json=body)
    return view, attach(base_url, verify, view["attach_path"], view["ticket"])


def _control(message: str, outcome: Outcome) -> bool:
    """Take one control message; True when the session is over."""
    try:
        control = parse_control(message)
    except ValidationError:
        return False
    if isinstance(control, Exit):
        outcome.exit_code = control.code
    elif isinstance(control, ErrorMessage):
        outcome.error = control.message
    elif isinstance(control, Closed):
        outcome.reason = control.reason
        return True
    return False


def receive(ws: ClientConnection, out: BinaryIO, err: BinaryIO, outcome: Outcome) -> None:
    """Until the controller's ``closed``; RelayLost if the stream breaks first."""
    try:
        for message in ws:
            if isinstance(message, bytes):
                channel, data = split_frame(message)
                target = err if channel == STDERR else out
                target.write(data)
                target.flush()
            elif _control(message, outcome):
                return
    except ConnectionClosed as exc:
        if not outcome.reason:
            raise RelayLost(LOST) from exc
        return
    if not outcome.reason:
        raise RelayLost(LOST)


def run_command(ws: ClientConnection, stdin: BinaryIO | None) -> Outcome:
    """``exec`` without a tty: stdin (if given) is sent then ended; output is written to
    this process's stdout and stderr; the outcome carries the command's exit code."""
    outcome = Outcome()

    def feed() -> None:
        with contextlib.suppress(ConnectionClosed, OSError, ValueError):
            if stdin is not None:
                while chunk := stdin.read1(65536) if hasattr(stdin, "read1") else stdin.read(65536):
                    ws.send(data_frame(STDIN, chunk))
            ws.send(Eof().model_dump_json())

    threading.Thread(target=feed, daemon=True).start()
    try:
        receive(ws, sys.stdout.buffer, sys.stderr.buffer, outcome)
    finally:
        ws.close()
    return outcome


def run_terminal(ws: ClientConnection) -> Outcome:
    """A console, shell or ``exec -t`` on this terminal until it ends or Ctrl-] is typed."""
    import termios
    import tty

    outcome = Outcome()
    fd = sys.stdin.fileno()
    is_tty = os.isatty(fd)
    saved = termios.tcgetattr(fd) if is_tty else None

    def resize(*_: Any) -> None:
        with contextlib.suppress(OSError, ConnectionClosed):
            size = os.get_terminal_size(fd)
            if size.columns and size.lines:  # a new pty may say 0x0
                ws.send(Resize(cols=size.columns, rows=size.lines).model_dump_json())

    def keys() -> None:
        with contextlib.suppress(OSError, ConnectionClosed):
            while data := os.read(fd, 4096):
                if DETACH in data:
                    ws.send(data_frame(STDIN, data.split(DETACH, 1)[0]))
                    outcome.reason = "left with Ctrl-]"
                    ws.close()
                    return
                ws.send(data_frame(STDIN, data))
            ws.send(Eof().model_dump_json())

    try:
        if is_tty:
            tty.setraw(fd)
            signal.signal(signal.SIGWINCH, resize)
            resize()
        threading.Thread(target=keys, daemon=True).start()
        receive(ws, sys.stdout.buffer, sys.stderr.buffer, outcome)
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        ws.close()
    return outcome


def pump_socket(ws: ClientConnection, sock: socket.socket) -> Outcome:
    """Relay one forwarded TCP connection until either side ends it."""
    outcome = Outcome()

    def up() -> None:
        with contextlib.suppress(OSError, ConnectionClosed):
            while data := sock.recv(65536):
                ws.send(data_frame(STDIN, data))
            ws.send(Eof().model_dump_json())

    threading.Thread(target=up, daemon=True).start()
    try:
        for message in ws:
            if isinstance(message, bytes):
                _channel, data = split_frame(message)
                sock.sendall(data)
            elif _control(message, outcome):
                break
    except (ConnectionClosed, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        ws.close()
    return outcome
