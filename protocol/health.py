"""App health probes: what the app spec asks the agent to check, and what it reports.

A probe (``AppSpec.health``) is one of

    http   GET http://<app address>:<port><path> answers a status in ``expect_status``
    tcp    a TCP connection to <app address>:<port> opens
    exec   ``command`` run inside the container exits 0 (containers only)

where <app address> is the app's address on its first app network (or ``network``), so
HTTP and TCP probes work the same for VMs and containers and need the app on a network.
Timing follows Docker's HEALTHCHECK: a probe runs every ``interval_s`` and may take
``timeout_s``; ``healthy_threshold`` successes in a row make the app healthy,
``unhealthy_threshold`` failures in a row make it unhealthy; failures during the
``start_period_s`` after the app started do not count until it has once been healthy.
``on_unhealthy: restart`` restarts the app when it turns unhealthy (a liveness probe; the
restart is counted like a crash), ``report`` only reports it.

The agent reports :class:`AppHealth` in ``AppStatus.health``; rollout gates read it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from protocol.model_base import StrictModel, Timestamp

__all__ = ["AppHealth", "HealthProbe", "HealthStatus", "ProbeKind"]

ProbeKind = Literal["http", "tcp", "exec"]
HealthStatus = Literal["starting", "healthy", "unhealthy"]
_Port = Annotated[int, Field(ge=1, le=65535)]
_Arg = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
_Path = Annotated[str, StringConstraints(pattern=r"^/[\x21-\x7e]{0,511}$")]
_Status = Annotated[int, Field(ge=100, le=599)]
_NetName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


PROBE_RULES = (
    "an http or tcp probe needs a port",
    "an exec probe needs a command",
    "only an exec probe takes a command",
    "an exec probe takes no port or network",
    "expect_status is [low, high] within 100…599",
    "timeout_s must not exceed interval_s",
)
"""The rules JSON Schema does not state (``x-rules``), in words."""


class HealthProbe(StrictModel):
    """How the agent checks that the app itself works (see the module docstring)."""

    model_config = ConfigDict(json_schema_extra={"x-rules": list(PROBE_RULES)})

    kind: ProbeKind
    port: _Port | None = None
    """http/tcp: the app's port (on its app network address)."""
    path: _Path = "/"
    """http: the path requested (printable ASCII, no spaces)."""
    expect_status: tuple[_Status, _Status] = (200, 399)
    """http: the lowest and highest status that count as healthy."""
    network: _NetName | None = None
    """http/tcp: the app network whose address is probed (default: the app's first)."""
    command: list[_Arg] = Field(default_factory=list, max_length=32)
    """exec: argv run inside the container (no shell unless the argv runs one)."""
    start_period_s: float = Field(default=0.0, ge=0.0, le=3600.0)
    interval_s: float = Field(default=10.0, ge=0.2, le=3600.0)
    timeout_s: float = Field(default=1.0, gt=0.0, le=60.0)
    healthy_threshold: int = Field(default=1, ge=1, le=100)
    unhealthy_threshold: int = Field(default=3, ge=1, le=100)
    on_unhealthy: Literal["report", "restart"] = "report"

    @model_validator(mode="after")
    def _complete(self) -> HealthProbe:
        if self.kind in ("http", "tcp") and self.port is None:
            raise ValueError(f"an http or tcp probe needs a port ({self.kind})")
        if self.kind == "exec" and not self.command:
            raise ValueError("an exec probe needs a command")
        if self.kind != "exec" and self.command:
            raise ValueError(f"only an exec probe takes a command ({self.kind})")
        if self.kind == "exec" and (self.port is not None or self.network is not None):
            raise ValueError("an exec probe takes no port or network")
        low, high = self.expect_status
        if not 100 <= low <= high <= 599:
            raise ValueError("expect_status is [low, high] within 100…599")
        if self.timeout_s > self.interval_s:
            raise ValueError("timeout_s must not exceed interval_s")
        return self


class AppHealth(StrictModel):
    """What the agent's probes found (``AppStatus.health``; None: the app has no probe).

    Stable between state changes (no per-probe counters), so an unchanged health makes an
    unchanged report; kept across agent restarts for the same app spec."""

    status: HealthStatus
    since: Timestamp
    """When (node clock) the app entered this status."""
    last_failure: Annotated[str, StringConstraints(max_length=512)] = ""
    """The most recent failed probe's reason (kept after a recovery)."""
    last_failure_at: Timestamp | None = None
    liveness_restarts: int = Field(default=0, ge=0, le=1_000_000)
    """Restarts the probe caused (``on_unhealthy: restart``) for the current spec; they
    are also counted in ``AppStatus.restarts``."""
