"""The client end of a remote session's WebSocket, with TLS driven by one thread.

    connect_websocket(url, cafile, **websockets_options) -> ClientConnection

Both clients of a session (the operator's ``outpost`` and the node's agent) read the
WebSocket in one thread while another writes (``websockets``' sync connection reads in a
thread of its own from the first moment).  On an ``ssl.SSLSocket`` that is one OpenSSL
object used from two threads at once, which OpenSSL does not allow: with TLS 1.3 the
server's session tickets arrive just as the client writes its upgrade request, and about
one connection in 200 hung until its open timeout (measured: 5 of 1,000 against a
single-threaded server; 0 of 1,000 through this module).

So for ``wss://`` the TLS connection is made here, on a memory BIO, and one pump thread
does every TLS read and write; ``websockets`` speaks plain WebSocket to the pump over a
local socket pair.  The pump ends (and closes both sides) when either side closes or the
network connection breaks, which ``websockets`` sees as the connection closing.
``ws://`` URLs are connected directly.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from websockets.sync.client import ClientConnection, connect

from protocol.remote import MAX_FRAME_BYTES

__all__ = ["SESSION_OPTIONS", "connect_websocket"]

SESSION_OPTIONS: dict[str, Any] = {"max_size": MAX_FRAME_BYTES, "max_queue": 4, "compression": None}
"""A session's WebSocket: frames up to the protocol's limit, one message per direction in
flight and a few queued (a slow reader holds the writer back), no compression."""

_CHUNK = 65536
_BUFFER_LIMIT = 1 << 20
"""Bytes the pump holds for one direction before it stops reading the other side (the
reader's slowness reaches the writer through TCP)."""
_LINGER_S = 30.0
"""How long the pump waits for ``websockets`` to close its end after the server closed."""


def connect_websocket(
    url: str, cafile: str | None, open_timeout: float = 20.0, **options: Any
) -> ClientConnection:
    """Open ``url`` (``ws://`` or ``wss://``; ``wss`` verifies the server against
    ``cafile``, or the system's CAs when None); ``options`` go to ``websockets``'
    ``connect``, over a session's own settings (frames up to ``MAX_FRAME_BYTES``, 4
    messages queued, no compression).  TLS and certificate errors raise ``ssl.SSLError``,
    an unreachable host ``OSError``, a slow one ``TimeoutError``."""
    options = {**SESSION_OPTIONS, **options}
    parts = urlsplit(url)
    if parts.scheme == "ws":
        return connect(url, open_timeout=open_timeout, legacy=True, **options)
    if parts.scheme != "wss" or not parts.hostname:
        raise ValueError(f"not a WebSocket URL: {url!r}")
    host, port = parts.hostname, parts.port or 443
    context = ssl.create_default_context(cafile=cafile)
    tcp = socket.create_connection((host, port), timeout=open_timeout)
    try:
        tls = _handshake(tcp, context, host)
    except BaseException:
        tcp.close()
        raise
    local, pump_end = socket.socketpair()
    threading.Thread(
        target=_Pump(tcp, tls, pump_end).run, name=f"tls-{host}:{port}", daemon=True
    ).start()
    plain = f"ws://{parts.netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    try:
        return connect(plain, sock=local, open_timeout=open_timeout, legacy=True, **options)
    except BaseException:
        local.close()  # the pump sees the end and closes the network connection
        raise


def _wait(
    readable: list[socket.socket], writable: list[socket.socket], timeout: float | None
) -> tuple[list[socket.socket], list[socket.socket]]:
    """The sockets of each list that are ready (``poll``: unlike ``select``, it takes
    file descriptors of any number; a process with 1,024 open files is no rarity)."""
    poller = select.poll()
    wanted: dict[int, int] = {}
    for sock in readable:
        wanted[sock.fileno()] = wanted.get(sock.fileno(), 0) | select.POLLIN
    for sock in writable:
        wanted[sock.fileno()] = wanted.get(sock.fileno(), 0) | select.POLLOUT
    for fd, mask in wanted.items():
        poller.register(fd, mask)
    ready = dict(poller.poll(None if timeout is None else timeout * 1000))
    # an error or hang-up counts as ready: the recv or send that follows reports it
    broken = select.POLLERR | select.POLLHUP | select.POLLNVAL
    return (
        [s for s in readable if ready.get(s.fileno(), 0) & (select.POLLIN | broken)],
        [s for s in writable if ready.get(s.fileno(), 0) & (select.POLLOUT | broken)],
    )


class _Tls:
    def __init__(
        self, obj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
    ) -> None:
        self.obj, self.incoming, self.outgoing = obj, incoming, outgoing


def _handshake(tcp: socket.socket, context: ssl.SSLContext, host: str) -> _Tls:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname=host)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if pending := outgoing.read():
                tcp.sendall(pending)
            data = tcp.recv(_CHUNK)
            if not data:
                raise ConnectionError(
                    f"{host} closed the connection during the TLS handshake"
                ) from None
            incoming.write(data)
    if pending := outgoing.read():
        tcp.sendall(pending)
    return _Tls(obj, incoming, outgoing)


class _Pump:
    """Moves bytes between the network (TLS) and the local socket until either ends."""

    def __init__(self, tcp: socket.socket, tls: _Tls, local: socket.socket) -> None:
        self.tcp, self.tls, self.local = tcp, tls, local
        self.to_tcp = bytearray()
        self.to_local = bytearray()
        self.tcp_done = False
        """The server closed (or the network broke): deliver what is left, then end."""
        self.local_done = False
        """The WebSocket side closed: send what is left, then end."""

    def run(self) -> None:
        try:
            self.tcp.setblocking(False)
            self.local.setblocking(False)
            while self._step():
                pass
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.local.close()
            with contextlib.suppress(OSError):
                self.to_tcp += self.tls.outgoing.read()
                if self.to_tcp:  # a last close_notify, as far as it goes without waiting
                    self.tcp.send(self.to_tcp)
            with contextlib.suppress(OSError):
                self.tcp.close()

    def _step(self) -> bool:
        if self.tcp_done and not self.to_local:
            self._linger()
            return False
        if self.local_done and not self.to_tcp:
            return False
        readable: list[socket.socket] = []
        if not (self.tcp_done or self.local_done):
            if len(self.to_local) < _BUFFER_LIMIT:
                readable.append(self.tcp)
            if len(self.to_tcp) < _BUFFER_LIMIT:
                readable.append(self.local)
        writable = [s for s, buf in ((self.tcp, self.to_tcp), (self.local, self.to_local)) if buf]
        r, w = _wait(readable, writable, None)
        if self.tcp in r:
            self._from_network()
        if self.local in r:
            self._from_local()
        if self.tcp in w:
            self._send(self.tcp, self.to_tcp)
        if self.local in w:
            self._send(self.local, self.to_local)
        return True

    def _linger(self) -> None:
        """The server's side ended and all it sent is delivered: say end-of-stream to
        ``websockets`` and take (and drop) what it still writes until it closes.  Closing
        at once would fail its answer to the server's close frame, and ``websockets``
        drops the messages it read with data whose answer it could not send."""
        with contextlib.suppress(OSError):
            self.local.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_S
        while (left := deadline - time.monotonic()) > 0:
            if not _wait([self.local], [], left)[0]:
                return
            try:
                if not self.local.recv(_CHUNK):
                    return
            except BlockingIOError:
                continue
            except OSError:
                return

    def _from_network(self) -> None:
        try:
            data = self.tcp.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self.tcp_done = True
            return
        if not data:
            self.tcp_done = True
            self.tls.incoming.write_eof()
        else:
            self.tls.incoming.write(data)
        while True:
            try:
                chunk = self.tls.obj.read(_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:
                self.tcp_done = True
                break
            if not chunk:  # the server's close_notify: answer it, then end
                self.tcp_done = True
                with contextlib.suppress(ssl.SSLError):
                    self.tls.obj.unwrap()
                break
            self.to_local += chunk
        self.to_tcp += self.tls.outgoing.read()  # what reading made TLS answer

    def _from_local(self) -> None:
        try:
            data = self.local.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.local_done = True
            with contextlib.suppress(ssl.SSLError):
                self.tls.obj.unwrap()  # close_notify
        else:
            try:
                self.tls.obj.write(data)
            except ssl.SSLError:  # the TLS connection is broken: nothing more goes out
                self.tcp_done = True
        self.to_tcp += self.tls.outgoing.read()

    def _send(self, sock: socket.socket, buf: bytearray) -> None:
        try:
            sent = sock.send(buf)
        except BlockingIOError:
            return
        except OSError:
            buf.clear()
            if sock is self.tcp:
                self.tcp_done = True
            else:
                self.local_done = True
            return
        del buf[:sent]
