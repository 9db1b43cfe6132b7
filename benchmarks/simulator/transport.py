"""HTTPS to the controller for many simulated nodes: one aiohttp session whose
connections are kept alive (a pool shared by the nodes), the controller's root pinned,
every request timed and every failure classified.

Error kinds, as a node would tell them apart: ``"<status> <code>"`` for an error answer
(``403 integrity_token_expired``), ``timeout``, ``connect`` (refused/unreachable),
``disconnected`` (the server closed the connection mid-request), ``tls``, ``<status> not-json``
and the exception's type name for anything else.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.simulator.stats import Stats

__all__ = ["RequestFailed", "Transport", "TransportSettings", "classify"]


class RequestFailed(Exception):
    """A request got no usable answer; ``what`` is the error kind, ``status`` the HTTP
    status when there was one (None for transport failures)."""

    def __init__(self, what: str, status: int | None = None, code: str = "") -> None:
        super().__init__(what)
        self.what, self.status, self.code = what, status, code


def classify(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "tls"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"os-error {exc.errno}"
    return type(exc).__name__


@dataclass(frozen=True)
class TransportSettings:
    url: str
    """The controller's (or the load balancer's) base URL, e.g. https://127.0.0.1:8443."""
    root_ca: Path
    """The pinned root (the onboarding bundle's root-ca.pem)."""
    connections: int = 1000
    """Pool size: connections kept open at most (a parked long-poll holds one)."""
    keepalive: bool = True
    """False: a new TCP + TLS connection per request (a node that never reuses one)."""
    timeout_s: float = 30.0
    local_addresses: tuple[str, ...] = ()
    """Source addresses to spread connections over (127.0.0.x), for more than ~28,000
    connections to one address:port; empty: the kernel's choice."""


class Transport:
    """``await post(kind, path, body)`` → (status, JSON answer); raises RequestFailed."""

    def __init__(self, settings: TransportSettings, stats: Stats) -> None:
        self.settings = settings
        self.stats = stats
        self.base = settings.url.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=str(settings.root_ca))
        self._sessions: list[aiohttp.ClientSession] = []
        self._next = 0
        self.in_flight = 0

    async def __aenter__(self) -> Transport:
        addresses = self.settings.local_addresses or (None,)
        per = max(1, self.settings.connections // len(addresses))
        for address in addresses:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl,
                limit=per,
                limit_per_host=0,
                force_close=not self.settings.keepalive,
                local_addr=(address, 0) if address else None,
                keepalive_timeout=60.0,
            )
            self._sessions.append(
                aiohttp.ClientSession(
                    connector=connector,
                    skip_auto_headers=("User-Agent",),
                    auto_decompress=False,  # the device API answers plain JSON
                    timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                )
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in self._sessions:
            await session.close()

    def _session(self) -> aiohttp.ClientSession:
        self._next = (self._next + 1) % len(self._sessions)
        return self._sessions[self._next]

    async def request(
        self,
        kind: str,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        record: bool = True,
        raw: tuple[bytes, str] | None = None,
    ) -> tuple[int, Any]:
        """One request to ``<url><path>`` (a JSON ``body``, or ``raw`` = (bytes, content
        type)); recorded in the stats under ``kind``."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        if raw is not None:
            data, hdrs = raw[0], {"Content-Type": raw[1]}
        if headers:
            hdrs.update(headers)
        # the session's timeout unless this request needs another (a long-poll)
        extra: dict[str, Any] = {}
        if timeout_s and timeout_s != self.settings.timeout_s:
            extra["timeout"] = aiohttp.ClientTimeout(total=timeout_s)
        self.in_flight += 1
        t0 = time.perf_counter()
        try:
            async with self._session().request(
                method, self.base + path, data=data, headers=hdrs, **extra
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except Exception as exc:
            what = classify(exc)
            if record:
                self.stats.error(kind, what)
            raise RequestFailed(what) from exc
        finally:
            self.in_flight -= 1
        ms = (time.perf_counter() - t0) * 1000.0
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError as exc:
            what = f"{status} not-json"  # e.g. the load balancer's own error page
            if record:
                self.stats.error(kind, what)
            raise RequestFailed(what, status) from exc
        if status >= 400:
            err = answer.get("error", {}) if isinstance(answer, dict) else {}
            code = err.get("code", "error") if isinstance(err, dict) else "error"
            if record:
                self.stats.error(kind, f"{status} {code}")
            raise RequestFailed(f"{status} {code}", status, code)
        if record:
            self.stats.ok(kind, ms, len(data or b""), len(raw))
        return status, answer

    async def device(
        self,
        kind: str,
        path: str,
        envelope: dict[str, str],
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, Any]:
        """A signed device API call (``/api/v1/device/<path>``)."""
        return await self.request(
            kind, "POST", f"/api/v1/device/{path}", envelope, headers, timeout_s
        )
