"""One run of an app's health probe.

``http``: ``GET http://<address>:<port><path>`` with the probe's timeout, healthy when the
status is within ``expect_status`` (the body is not read past 4 KiB).  ``tcp``: a
connection to ``<address>:<port>`` opens within the timeout.  ``exec``: the command runs
inside the container (the runtime's ``exec``, e.g. ``podman exec``) and exits 0.  The
address is the app's on its app network, reached from the node (the agent's own network
namespace holds the app bridges), so VMs and containers are probed alike.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol.health import HealthProbe

__all__ = ["ExecFn", "ProbeResult", "run_probe"]

ExecFn = Callable[[str, Sequence[str], float], tuple[int, str]]
"""(app uuid, argv, timeout) → (exit code, output) of a command run inside the app."""


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    """Why it failed (or what it saw), for ``AppHealth.last_failure``."""
    seconds: float = 0.0


def _http(probe: HealthProbe, address: str) -> ProbeResult:
    assert probe.port is not None
    conn = http.client.HTTPConnection(address, probe.port, timeout=probe.timeout_s)
    try:
        conn.request("GET", probe.path, headers={"User-Agent": "outpost-health-probe"})
        resp = conn.getresponse()
        resp.read(4096)
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(False, f"GET {probe.path} on {address}:{probe.port}: {exc}")
    finally:
        conn.close()
    low, high = probe.expect_status
    if low <= resp.status <= high:
        return ProbeResult(True, f"HTTP {resp.status}")
    return ProbeResult(
        False, f"GET {probe.path} on {address}:{probe.port} answered HTTP {resp.status}"
    )


def _tcp(probe: HealthProbe, address: str) -> ProbeResult:
    assert probe.port is not None
    try:
        with socket.create_connection((address, probe.port), timeout=probe.timeout_s):
            return ProbeResult(True, "connected")
    except OSError as exc:
        return ProbeResult(False, f"TCP {address}:{probe.port}: {exc}")


def run_probe(
    probe: HealthProbe, app_uuid: str, address: str | None, exec_fn: ExecFn | None
) -> ProbeResult:
    """Run ``probe`` once against the app (never raises; a failure is a result)."""
    t0 = time.monotonic()
    if probe.kind == "exec":
        if exec_fn is None:
            result = ProbeResult(False, "this runtime cannot run commands inside the app")
        else:
            try:
                code, output = exec_fn(app_uuid, probe.command, probe.timeout_s)
            except Exception as exc:  # a runtime error is the probe's failure
                result = ProbeResult(False, f"exec {probe.command[0]}: {exc}")
            else:
                tail = output.strip()[-200:]
                result = (
                    ProbeResult(True, f"exit 0 {tail}".strip())
                    if code == 0
                    else ProbeResult(False, f"exec {probe.command[0]} exited {code}: {tail}")
                )
    elif address is None:
        result = ProbeResult(False, "the app has no address on its network yet")
    elif probe.kind == "http":
        result = _http(probe, address)
    else:
        result = _tcp(probe, address)
    return ProbeResult(result.ok, result.detail, time.monotonic() - t0)
