"""What a session opens on the node, behind one small interface.

    read() -> (channel, bytes) | None    blocking; None at the end
    write(bytes)                         the operator's input (or a forward's bytes)
    resize(cols, rows) · eof() · close() · exit_code()

:class:`PtyCommand` runs a command on a pseudo-terminal (a root shell on the node, or
``podman exec -it``); :class:`PipeCommand` runs one with pipes (``outpost exec`` without a
tty: stdout and stderr stay apart, stdin can end); :class:`LibvirtConsole` is a VM's serial
console through libvirt's console stream; :class:`TcpForward` is one TCP connection from
the node to an app's address on its app network.  Reads are bounded (64 KiB), and the
session reads again only after it sent what it read (back-pressure).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import struct
import subprocess
import termios
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from protocol.remote import STDERR, STDOUT

__all__ = ["Endpoint", "LibvirtConsole", "OpenFailed", "PipeCommand", "PtyCommand", "TcpForward"]

log = logging.getLogger(__name__)
READ_BYTES = 65536


class OpenFailed(Exception):
    """The console, command or connection could not be opened (the reason is sent back)."""


class Endpoint(Protocol):
    def read(self) -> tuple[int, bytes] | None: ...
    def write(self, data: bytes) -> None: ...
    def resize(self, cols: int, rows: int) -> None: ...
    def eof(self) -> None: ...
    def close(self) -> None: ...
    def exit_code(self) -> int | None: ...


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _make_controlling_tty() -> None:  # runs in the child between fork and exec
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyCommand:
    def __init__(
        self,
        argv: Sequence[str],
        cols: int,
        rows: int,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        master, slave = os.openpty()
        _set_size(master, cols, rows)
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env={**os.environ, "TERM": "xterm-256color", **(env or {})},
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_make_controlling_tty,  # the child execs at once
                close_fds=True,
            )
        except OSError as exc:
            os.close(master)
            raise OpenFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        finally:
            os.close(slave)
        self.master = master
        self._closed = False

    def read(self) -> tuple[int, bytes] | None:
        try:
            data = os.read(self.master, READ_BYTES)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF):  # the last writer of the pty left
                return None
            raise
        return (STDOUT, data) if data else None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.master, view)
            view = view[written:]

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(OSError):
            _set_size(self.master, cols, rows)

    def eof(self) -> None:
        self.write(b"\x04")  # ^D: end of input, as a terminal says it

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 1)  # SIGHUP to the session, as a hang-up does
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self.master)

    def exit_code(self) -> int | None:
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return None


class PipeCommand:
    """A command with pipes: stdout and stderr on their channels, stdin closable."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        except OSError as exc:
            raise OpenFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        self._out: list[tuple[int, bytes] | None] = []
        self._ready = threading.Condition()
        self._open = 2
        for channel, pipe in ((STDOUT, self.proc.stdout), (STDERR, self.proc.stderr)):
            threading.Thread(target=self._drain, args=(channel, pipe), daemon=True).start()

    def _drain(self, channel: int, pipe: Any) -> None:
        for chunk in iter(lambda: pipe.read1(READ_BYTES), b""):
            with self._ready:
                while len(self._out) >= 2:  # one chunk per stream in flight: back-pressure
                    self._ready.wait()
                self._out.append((channel, chunk))
                self._ready.notify_all()
        with self._ready:
            self._open -= 1
            self._ready.notify_all()

    def read(self) -> tuple[int, bytes] | None:
        with self._ready:
            while not self._out and self._open:
                self._ready.wait()
            if not self._out:
                return None
            item = self._out.pop(0)
            self._ready.notify_all()
            return item

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def resize(self, cols: int, rows: int) -> None:
        return None

    def eof(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def exit_code(self) -> int | None:
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return None


class LibvirtConsole:
    """A running domain's serial console (``virDomainOpenConsole``, forced: a new session
    takes the console over from an older one)."""

    def __init__(self, uri: str, domain: str) -> None:
        import libvirt

        self._libvirt = libvirt
        try:
            self.conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise OpenFailed(f"cannot reach libvirt: {exc.get_error_message()}") from exc
        try:
            dom = self.conn.lookupByName(domain)
            if not dom.isActive():
                raise OpenFailed("the VM is not running")
            self.stream = self.conn.newStream(0)
            dom.openConsole(None, self.stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        except libvirt.libvirtError as exc:
            self.conn.close()
            message = exc.get_error_message() or str(exc)
            if "character device" in message or "serial" in message.lower():
                message += " (a VM defined before console access: restart the app once)"
            raise OpenFailed(f"cannot open the console: {message}") from exc
        except OpenFailed:
            self.conn.close()
            raise
        self._lock = threading.Lock()
        self._closed = False

    def read(self) -> tuple[int, bytes] | None:
        try:
            data = self.stream.recv(READ_BYTES)
        except self._libvirt.libvirtError:
            return None
        if not isinstance(data, bytes) or not data:
            return None
        return STDOUT, data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = self.stream.send(bytes(view))
            if sent <= 0:
                raise OSError("the console stream closed")
            view = view[sent:]

    def resize(self, cols: int, rows: int) -> None:
        return None  # a serial line has no window size

    def eof(self) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(self._libvirt.libvirtError):
            self.stream.abort()
        with contextlib.suppress(self._libvirt.libvirtError):
            self.conn.close()

    def exit_code(self) -> int | None:
        return None


class TcpForward:
    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise OpenFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        self.sock.settimeout(None)

    def read(self) -> tuple[int, bytes] | None:
        try:
            data = self.sock.recv(READ_BYTES)
        except OSError:
            return None
        return (STDOUT, data) if data else None

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def resize(self, cols: int, rows: int) -> None:
        return None

    def eof(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def exit_code(self) -> int | None:
        return None
