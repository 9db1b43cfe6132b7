"""The CLI's HTTPS client: the standard library's ``http.client`` and ``ssl``.

``requests`` costs ~0.2 s to import (urllib3, charset detection, idna); the CLI makes one
or two calls per run, so it speaks HTTP/1.1 itself and starts in a fraction of that.

    Client(url, token, ca).call(method, path, json=…, params=…, data=…, headers=…)
    Client(...).get_raw(path) -> Response   (status, body bytes)

TLS: the controller's root CA (``ca``), else the system's trust store (``SSL_CERT_FILE``
and ``REQUESTS_CA_BUNDLE`` are honoured).  A proxy from ``HTTPS_PROXY`` (``https_proxy``)
is used through CONNECT unless ``NO_PROXY`` names the host.  Failures to connect are
:class:`Unreachable`; an answer of 400 and above is the caller's to read.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import ssl
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

__all__ = ["HttpClient", "Response", "Unreachable"]

TIMEOUT_S = 60.0
CHUNK = 1 << 20


class Unreachable(Exception):
    """The controller could not be reached (DNS, TCP, TLS, a timeout, a cut connection)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def _context(ca: str | None) -> ssl.SSLContext:
    cafile = ca or os.environ.get("REQUESTS_CA_BUNDLE") or None
    return ssl.create_default_context(cafile=cafile)


def _no_proxy(host: str) -> bool:
    names = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    for name in (n.strip().lstrip(".") for n in names.split(",")):
        if name == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False


class HttpClient:
    """One connection to ``url`` (kept alive across calls), with a bearer token."""

    def __init__(self, url: str, token: str, ca: str | None) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise Unreachable(f"{url}: not an http(s):// address")
        self._scheme, self._host = parts.scheme, parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._base = parts.path.rstrip("/")
        self._ca = ca
        self._token = token
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None:
            return self._conn
        proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
        if self._scheme == "http":
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT_S)
        elif proxy and not _no_proxy(self._host):
            p = urlsplit(proxy if "//" in proxy else f"http://{proxy}")
            conn = http.client.HTTPSConnection(
                p.hostname or "", p.port or 3128, timeout=TIMEOUT_S, context=_context(self._ca)
            )
            conn.set_tunnel(self._host, self._port)
            self._conn = conn
        else:
            self._conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=TIMEOUT_S, context=_context(self._ca)
            )
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        data: bytes | IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """``path`` below the URL's own path (``/api/v1/nodes``)."""
        target = self._base + path
        if params:
            target += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        head = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        body: bytes | IO[bytes] | None = data
        if json is not None:
            body = jsonlib.dumps(json).encode()
            head["Content-Type"] = "application/json"
        if isinstance(body, bytes):
            head["Content-Length"] = str(len(body))
        elif body is not None:
            head["Content-Length"] = str(os.fstat(body.fileno()).st_size - body.tell())
        head.update(headers or {})
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more
            conn = self._connection()
            try:
                conn.request(method, target, body=body, headers=head)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conn = None
                stale = isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError)
                if attempt == 1 and stale and (body is None or isinstance(body, bytes)):
                    continue
                raise Unreachable(f"{self._scheme}://{self._host}:{self._port}: {exc}") from exc
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                self._conn = None
            return Response(resp.status, payload)
        raise AssertionError("unreachable")  # pragma: no cover  (the loop returns or raises)
