"""One app's health verdict from its probe results (Docker's HEALTHCHECK rules).

    starting ─healthy_threshold successes in a row─▶ healthy
    starting/healthy ─unhealthy_threshold failures in a row─▶ unhealthy
    unhealthy ─healthy_threshold successes in a row─▶ healthy

Failures within ``start_period_s`` of the app's start do not count while the app has
never been healthy (a slow start is not a failure); once it has, every failure counts.
Times are wall-clock seconds (they are reported, and kept across agent restarts); the
tracker is pure: the caller passes the time of each result.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.health import AppHealth, HealthProbe, HealthStatus

__all__ = ["ProbeTracker", "TrackerState"]


@dataclass
class TrackerState:
    """What survives an agent restart (``app-health.json``), for one app spec."""

    spec: str
    status: HealthStatus
    since: float
    started_at: float
    ever_healthy: bool = False
    last_failure: str = ""
    last_failure_at: float | None = None
    liveness_restarts: int = 0

    def report(self) -> AppHealth:
        return AppHealth(
            status=self.status,
            since=max(self.since, 0.0),
            last_failure=self.last_failure,
            last_failure_at=self.last_failure_at,
            liveness_restarts=min(self.liveness_restarts, 1_000_000),
        )


class ProbeTracker:
    def __init__(self, probe: HealthProbe, state: TrackerState) -> None:
        self.probe = probe
        self.state = state
        self.successes = 0
        self.failures = 0

    @classmethod
    def fresh(cls, probe: HealthProbe, spec: str, now: float) -> ProbeTracker:
        return cls(probe, TrackerState(spec=spec, status="starting", since=now, started_at=now))

    def record(self, ok: bool, detail: str, now: float) -> bool:
        """Fold one probe result in; True when the status changed."""
        s = self.state
        if ok:
            self.successes += 1
            self.failures = 0
            if s.status != "healthy" and self.successes >= self.probe.healthy_threshold:
                return self._become("healthy", now)
            return False
        self.successes = 0
        s.last_failure, s.last_failure_at = detail[:512], now
        in_start = now - s.started_at < self.probe.start_period_s
        if in_start and not s.ever_healthy:
            return False
        self.failures += 1
        if s.status != "unhealthy" and self.failures >= self.probe.unhealthy_threshold:
            return self._become("unhealthy", now)
        return False

    def restarted(self, now: float, liveness: bool) -> None:
        """The app was started again: a new start period, counters from zero."""
        s = self.state
        s.status, s.since, s.started_at, s.ever_healthy = "starting", now, now, False
        if liveness:
            s.liveness_restarts += 1
        self.successes = self.failures = 0

    def _become(self, status: HealthStatus, now: float) -> bool:
        self.state.status, self.state.since = status, now
        if status == "healthy":
            self.state.ever_healthy = True
        return True

    def report(self) -> AppHealth:
        return self.state.report()
