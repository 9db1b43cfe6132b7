"""A WebSocket over the socket of an HTTP request the server handed over (server side).

The protocol is ``websockets``' sans-I/O :class:`~websockets.server.ServerProtocol`
(handshake checks, framing, masking, ping/pong, the closing handshake); this module only
moves its bytes.  It reads the socket only when :meth:`ServerWebSocket.recv` is called, so
a relay that forwards one message before it asks for the next holds at most one message
per direction in memory: a slow reader slows the writer through TCP, nothing piles up
(flask-sock/simple-websocket read the peer in a background thread into an unbounded list).

Works on any blocking socket: gevent's under gunicorn (one greenlet may receive while
another sends; writes are serialised by a lock), plain sockets and threads in tests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable

from websockets.exceptions import InvalidState, ProtocolError
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from protocol.remote import MAX_FRAME_BYTES

__all__ = ["HandshakeRefused", "Message", "ServerWebSocket"]

Message = str | bytes
_RECV_BYTES = 65536


class HandshakeRefused(Exception):
    """Not a valid WebSocket upgrade (the HTTP error answer was sent)."""


class ServerWebSocket:
    def __init__(self, sock: socket.socket, proto: ServerProtocol) -> None:
        self.sock = sock
        self.proto = proto
        self._write_lock = threading.Lock()
        self._parts: list[bytes] = []
        self._part_opcode: Opcode | None = None
        self._pending: list[Message] = []
        self.last_received = time.monotonic()
        """When anything (a message, a pong) last arrived: a dead peer shows here."""

    @classmethod
    def accept(
        cls,
        sock: socket.socket,
        path: str,
        headers: Iterable[tuple[str, str]],
        max_size: int = MAX_FRAME_BYTES,
    ) -> ServerWebSocket:
        """Answer the upgrade request (101), or the error answer and HandshakeRefused."""
        proto = ServerProtocol(max_size=max_size)
        # the server already parsed the request; the protocol's parser reads it again
        # (its state machine moves from the handshake to frames only so)
        head = [f"GET {path} HTTP/1.1"] + [f"{name}: {value}" for name, value in headers]
        proto.receive_data(("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace"))
        requests = [e for e in proto.events_received() if isinstance(e, Request)]
        if not requests:
            with contextlib.suppress(OSError):
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            raise HandshakeRefused("400 not a valid WebSocket upgrade request")
        response = proto.accept(requests[0])
        proto.send_response(response)
        ws = cls(sock, proto)
        ws._blocking()
        ws._flush()
        if response.status_code != 101:
            raise HandshakeRefused(f"{response.status_code} {response.reason_phrase}")
        return ws

    def _blocking(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.settimeout(None)

    # -- sending ---------------------------------------------------------------------------
    def _flush(self) -> None:
        with self._write_lock:
            for chunk in self.proto.data_to_send():
                if chunk:
                    self.sock.sendall(chunk)
                else:  # the protocol says: close the TCP connection
                    with contextlib.suppress(OSError):
                        self.sock.shutdown(socket.SHUT_WR)

    def send(self, message: Message) -> None:
        """Send one message; OSError/ConnectionError when the peer is gone."""
        try:
            if isinstance(message, str):
                self.proto.send_text(message.encode())
            else:
                self.proto.send_binary(message)
        except InvalidState as exc:
            raise ConnectionError(f"the WebSocket is closing: {exc}") from exc
        self._flush()

    def ping(self) -> None:
        try:
            self.proto.send_ping(b"outpost")
            self._flush()
        except (InvalidState, OSError):
            pass

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (if open), then close the socket."""
        try:
            if self.proto.state is State.OPEN:
                self.proto.send_close(code, reason[:120])
                self._flush()
        except (InvalidState, OSError):
            pass
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- receiving -------------------------------------------------------------------------
    def _take_events(self) -> None:
        for event in self.proto.events_received():
            self.last_received = time.monotonic()
            if not isinstance(event, Frame):
                continue
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._part_opcode, self._parts = event.opcode, [bytes(event.data)]
            elif event.opcode is Opcode.CONT and self._part_opcode is not None:
                self._parts.append(bytes(event.data))
            else:
                continue
            if event.fin:
                data = b"".join(self._parts)
                text = self._part_opcode is Opcode.TEXT
                self._pending.append(data.decode("utf-8", "replace") if text else data)
                self._parts, self._part_opcode = [], None
        self._flush()  # pongs and the close answer

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message; None once the connection is closed (either side) or, with
        ``timeout``, when nothing came in time (check :attr:`closed`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pending:
            if self.proto.state is State.CLOSED or self.proto.close_rcvd is not None:
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            try:
                if left is not None:
                    self.sock.settimeout(left)
                data = self.sock.recv(_RECV_BYTES)
            except TimeoutError:
                return None
            except OSError:
                self.proto.receive_eof()
                return None
            finally:
                if left is not None:
                    self._blocking()
            if not data:
                self.proto.receive_eof()
                return None
            try:
                self.proto.receive_data(data)
            except ProtocolError:
                return None
            self._take_events()
        return self._pending.pop(0)

    @property
    def closed(self) -> bool:
        return self.proto.state is State.CLOSED or self.proto.close_rcvd is not None
