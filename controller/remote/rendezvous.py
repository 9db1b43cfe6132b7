"""The two halves of a session meeting inside one machine.

The operator's and the node's WebSocket of one session reach the same controller replica
(the balancer hashes the session path) but maybe different worker processes of it.  They
meet on an abstract Unix socket named after the database and the session: the first to
arrive binds and listens (binding is atomic: exactly one wins), the other connects and
proves it belongs with the session's rendezvous key (random, in the session row) and says
which side it is.  An abstract socket vanishes with its process, so nothing stale is left
behind by a crash.

Between the halves, :class:`Pipe` carries messages as frames: a kind byte (text or
binary), a 4-byte length, the payload (at most ``MAX_FRAME_BYTES`` + 1).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import socket
import struct
import time
from collections.abc import Callable

from protocol.remote import MAX_FRAME_BYTES

__all__ = ["MeetFailed", "Pipe", "meet", "scope_for"]

_TEXT, _BINARY = 1, 2
_HEAD = struct.Struct("!BI")
_HELLO = struct.Struct("!64s8s")
_RETRY_S = 0.01


class MeetFailed(Exception):
    """The other half did not arrive in time, or was not who it claimed."""


def scope_for(database_url: str) -> str:
    """A name part shared by every controller process of one fleet (one database)."""
    return hashlib.sha256(database_url.encode()).hexdigest()[:16]


def _address(scope: str, session_id: str) -> str:
    return f"\0outpost-remote/{scope}/{session_id}"


class Pipe:
    """One message stream to the other half (blocking; one reader, one writer)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, message: str | bytes) -> None:
        data = message.encode() if isinstance(message, str) else message
        kind = _TEXT if isinstance(message, str) else _BINARY
        self.sock.sendall(_HEAD.pack(kind, len(data)) + data)

    def _exactly(self, size: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < size:
            chunk = self.sock.recv(size - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def recv(self) -> str | bytes | None:
        """The next message; None when the other half closed (or broke the framing)."""
        try:
            head = self._exactly(_HEAD.size)
            if head is None:
                return None
            kind, size = _HEAD.unpack(head)
            if kind not in (_TEXT, _BINARY) or size > MAX_FRAME_BYTES + 1:
                return None
            data = self._exactly(size) if size else b""
        except OSError:
            return None
        if data is None:
            return None
        return data.decode("utf-8", "replace") if kind == _TEXT else data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


def _hello(key: str, role: str) -> bytes:
    return _HELLO.pack(key.encode()[:64].ljust(64, b"\0"), role.encode()[:8].ljust(8, b"\0"))


def meet(
    scope: str,
    session_id: str,
    key: str,
    role: str,
    timeout_s: float,
    tick: Callable[[], None] | None = None,
    tick_every_s: float = 2.0,
) -> Pipe:
    """Meet the session's other half (role ``operator`` or ``agent``) within
    ``timeout_s``; ``tick`` is called every ``tick_every_s`` while waiting (heartbeat)."""
    address = _address(scope, session_id)
    deadline = time.monotonic() + timeout_s
    while True:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(address)
        except OSError as exc:
            listener.close()
            if exc.errno != errno.EADDRINUSE:
                raise MeetFailed(f"cannot bind the rendezvous socket: {exc}") from exc
        else:
            listener.listen(4)
            try:
                return _host(listener, key, role, deadline, tick, tick_every_s)
            finally:
                listener.close()
        pipe = _guest(address, key, role)
        if pipe is not None:
            return pipe
        if time.monotonic() > deadline:
            raise MeetFailed("the other side of the session did not arrive in time")
        time.sleep(_RETRY_S)  # the host is between bind and listen, or just went away


def _guest(address: str, key: str, role: str) -> Pipe | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
        sock.sendall(_hello(key, role))
    except OSError:
        sock.close()
        return None
    return Pipe(sock)


def _host(
    listener: socket.socket,
    key: str,
    role: str,
    deadline: float,
    tick: Callable[[], None] | None,
    tick_every_s: float,
) -> Pipe:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise MeetFailed("the other side of the session did not arrive in time")
        listener.settimeout(min(left, tick_every_s))
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if tick is not None:
                tick()
            continue
        conn.settimeout(5.0)
        try:
            hello = Pipe(conn)._exactly(_HELLO.size)
        except OSError:
            hello = None
        conn.settimeout(None)
        if hello is not None:
            their_key, their_role = _HELLO.unpack(hello)
            other = their_role.rstrip(b"\0").decode("ascii", "replace")
            if hmac.compare_digest(their_key.rstrip(b"\0"), key.encode()) and other != role:
                return Pipe(conn)
        conn.close()  # not the session's other half: keep waiting for it
