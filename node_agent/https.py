"""The agent's HTTP(S) client, on the standard library's ``http.client`` and ``ssl``.

    http = HttpsClient(timeout_s=30)
    answer = http.request("POST", url, json_body=body, ca_file=root)   # whole, bounded
    with http.stream("GET", url, headers={"Range": "bytes=10-"}) as resp:
        for chunk in resp.iter_content(65536): ...

- TLS is always checked: against ``ca_file`` (the controller's pinned root) or, with
  ``ca_file=None``, the system's CAs; host names (and IP addresses) are matched.
- Keep-alive: one connection per thread, host and trust, reused while the server keeps it
  open (a connection the server has closed is noticed before it is used, never retried
  after a request was sent: device requests are single-use signed envelopes).
- Proxies come from the environment as curl and requests read them: ``https_proxy`` /
  ``http_proxy`` / ``all_proxy`` (either case; an ``http://`` proxy, HTTPS through
  ``CONNECT``, credentials in the URL), ``no_proxy`` with host suffixes, IP networks and
  ``*``.
- Every failure to get an answer (refused, TLS, timeout, a broken read) is
  :class:`TransportError`; an answer, whatever its status, is returned.

Why not ``requests``: it and urllib3 were ~8 MiB of the agent's resident memory
(docs/benchmarks.md, "The agent's memory, part by part"), for what these 200 lines do.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import os
import select
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = ["Answer", "HttpsClient", "Stream", "TransportError", "proxy_for"]

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest answer :meth:`HttpsClient.request` reads (callers bound it lower)."""


_URL_SAFE = "/?#[]@!$&'()*+,;=:%~"


class TransportError(Exception):
    """No answer: the connection, TLS, a timeout or the read failed."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: Mapping[str, str]
    """Lower-case names."""
    content: bytes
    truncated: bool = False
    """The body was longer than the caller's ``max_bytes``; ``content`` holds its start."""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Stream:
    """An answer whose body is read as it arrives; close it (or use ``with``)."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn, self._resp = conn, resp
        self.status_code = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        while True:
            try:
                chunk = self._resp.read(chunk_size)
            except (OSError, http.client.HTTPException) as exc:
                raise TransportError(f"reading the answer: {exc or type(exc).__name__}") from exc
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        self._resp.close()
        self._conn.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"{url!r}: not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TransportError(f"{url!r}: {exc}") from exc
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    # a request line is ASCII: anything else (an operator's URL may hold it) is %-encoded,
    # what is already %-encoded is left alone
    return _Target(parts.scheme, parts.hostname, port, quote(path, safe=_URL_SAFE))


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    authorization: str | None


def _env(name: str) -> str:
    return os.environ.get(name.lower()) or os.environ.get(name.upper()) or ""


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    host = host.lower().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]")
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        suffix = name.lstrip(".")
        if host == suffix or host.endswith(f".{suffix}"):
            return True
    return False


def proxy_for(scheme: str, host: str, port: int) -> _Proxy | None:
    """The proxy the environment names for this URL's scheme and host (None: direct)."""
    if _bypassed(host, port, _env("no_proxy")):
        return None
    url = _env(f"{scheme}_proxy") or _env("all_proxy")
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise TransportError(f"proxy {url!r}: only http:// proxies are supported")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return _Proxy(parts.hostname, parts.port or 80, authorization)


_CONTEXTS: dict[tuple[str, int, int], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def _tls(ca_file: str | None) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` (or the system's CAs); one per file version."""
    key = ("", 0, 0)
    if ca_file is not None:
        try:
            st = Path(ca_file).stat()
        except OSError as exc:
            raise TransportError(f"CA file {ca_file}: {exc}") from exc
        key = (ca_file, st.st_mtime_ns, st.st_size)
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            try:
                context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(f"CA file {ca_file}: {exc}") from exc
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            _CONTEXTS[key] = context
        return context


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether a kept connection was closed by the server (or sent something unasked)."""
    sock = conn.sock
    if sock is None:
        return False  # not connected: http.client connects on the next request
    poller = select.poll()  # select() refuses descriptors >= 1024
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _path(target: _Target, proxy: _Proxy | None) -> str:
    """The request target: absolute for plain HTTP through a proxy."""
    if proxy is not None and target.scheme == "http":
        return f"http://{target.host}:{target.port}{target.path}"
    return target.path


def _connect(
    target: _Target, proxy: _Proxy | None, ca_file: str | None, timeout: float
) -> http.client.HTTPConnection:
    host, port = (target.host, target.port) if proxy is None else (proxy.host, proxy.port)
    if target.scheme == "http":
        return http.client.HTTPConnection(host, port, timeout=timeout)
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls(ca_file))
    if proxy is not None:  # TLS to the target inside the proxy's CONNECT tunnel
        auth = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
        conn.set_tunnel(target.host, target.port, auth)
    return conn


def _read_at_most(resp: http.client.HTTPResponse, limit: int) -> bytes:
    """The answer's body up to ``limit`` bytes, read in pieces (``read(limit)`` on an answer
    without a length would allocate ``limit`` bytes at once)."""
    chunks: list[bytes] = []
    left = limit
    while left > 0 and (chunk := resp.read(min(left, 256 * 1024))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _failed(url: str, exc: BaseException) -> TransportError:
    return TransportError(f"{url}: {exc or type(exc).__name__}")


_Key = tuple[str, str, int, str | None, _Proxy | None]


class HttpsClient:
    def __init__(self, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _pool(self) -> dict[_Key, http.client.HTTPConnection]:
        pool: dict[_Key, http.client.HTTPConnection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def _kept(
        self, key: _Key, target: _Target, proxy: _Proxy | None, ca_file: str | None, timeout: float
    ) -> http.client.HTTPConnection:
        """This thread's open connection for ``key`` (a new one if the old was closed)."""
        pool = self._pool()
        conn = pool.get(key)
        if conn is not None and _dropped(conn):
            conn.close()  # the next request reconnects
        if conn is None:
            conn = pool[key] = _connect(target, proxy, ca_file, timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        ca_file: str | None = None,
        timeout_s: float | None = None,
        max_bytes: int = MAX_BODY_BYTES,
    ) -> Answer:
        """Send one request on a kept connection and read its whole answer (at most
        ``max_bytes``; a longer one is marked ``truncated`` and its connection dropped)."""
        target = _target(url)
        proxy = proxy_for(target.scheme, target.host, target.port)
        key: _Key = (target.scheme, target.host, target.port, ca_file, proxy)
        sent = dict(headers or {})
        body = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            sent.setdefault("Content-Type", "application/json")
        conn = self._kept(key, target, proxy, ca_file, timeout_s or self.timeout_s)
        try:
            conn.request(method, _path(target, proxy), body=body, headers=sent)
            resp = conn.getresponse()
            content = _read_at_most(resp, max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._pool().pop(key, None)
            raise _failed(url, exc) from exc
        truncated = len(content) > max_bytes
        if truncated or resp.will_close:
            conn.close()
        return Answer(
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            content[:max_bytes],
            truncated,
        )

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        ca_file: str | None = None,
        timeout_s: float | None = None,
    ) -> Stream:
        """Send one request on a connection of its own and return the answer unread."""
        target = _target(url)
        proxy = proxy_for(target.scheme, target.host, target.port)
        conn = _connect(target, proxy, ca_file, timeout_s or self.timeout_s)
        try:
            conn.request(method, _path(target, proxy), headers=dict(headers or {}))
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _failed(url, exc) from exc
        return Stream(conn, resp)

    def close(self) -> None:
        """Close this thread's kept connections."""
        for conn in self._pool().values():
            conn.close()
        self._pool().clear()
