"""Per-app back-offs: restarts of apps that stop on their own, retries of failed starts.

Both wait ``base_s * 2**(n-1)`` after the n-th failure in a row, up to ``max_s``, and
take the time as an argument (the reconciler reads it from its injected clock), so they
are tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CrashBackoff", "RetryBackoff", "exponential_delay"]


def exponential_delay(n: int, base_s: float, max_s: float) -> float:
    """The wait after the ``n``-th failure in a row (n ≥ 1): base, 2·base, 4·base … max."""
    if n < 1:
        return 0.0
    return float(min(base_s * 2 ** min(n - 1, 62), max_s))


@dataclass
class CrashBackoff:
    """Restart delays for apps that stop on their own (EVE's restart with back-off).

    The n-th stop in a row waits ``0`` (n = 1), then ``base_s * 2**(n-2)`` up to ``max_s``;
    an app that ran ``stable_s`` in one go starts counting from zero again.  Two or more
    stops in a row are a crash loop (:meth:`looping`).
    """

    base_s: float = 1.0
    max_s: float = 60.0
    stable_s: float = 60.0
    crashes: dict[str, int] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    restart_at: dict[str, float] = field(default_factory=dict)
    delay_s: dict[str, float] = field(default_factory=dict)

    def started(self, uuid: str, now: float) -> None:
        self.started_at[uuid] = now
        self.restart_at.pop(uuid, None)

    def watching(self, uuid: str) -> bool:
        """True while a stop of ``uuid`` would be its own (it was started or seen running)."""
        return uuid in self.started_at

    def running(self, uuid: str, now: float) -> None:
        """Seen running: start watching it; a run of ``stable_s`` ends a crash loop."""
        since = self.started_at.setdefault(uuid, now)
        if now - since >= self.stable_s and self.crashes.get(uuid):
            self.crashes[uuid] = 0
            self.delay_s.pop(uuid, None)

    def stopped(self, uuid: str, now: float) -> float:
        """Count an unexpected stop; the delay before its restart."""
        if now - self.started_at.get(uuid, now) >= self.stable_s:
            self.crashes[uuid] = 0
        n = self.crashes.get(uuid, 0) + 1
        self.crashes[uuid] = n
        delay = exponential_delay(n - 1, self.base_s, self.max_s)
        self.delay_s[uuid] = delay
        self.restart_at[uuid] = now + delay
        self.started_at.pop(uuid, None)
        return delay

    def looping(self, uuid: str) -> bool:
        """Stopped on its own twice or more in a row, without a stable run between."""
        return self.crashes.get(uuid, 0) >= 2

    def waiting(self, uuid: str, now: float) -> float:
        """Seconds left before ``uuid`` may be restarted (0: now)."""
        return max(0.0, self.restart_at.get(uuid, now) - now)

    def forget(self, uuid: str) -> None:
        for table in (self.crashes, self.started_at, self.restart_at, self.delay_s):
            table.pop(uuid, None)


@dataclass
class RetryBackoff:
    """Retry delays after temporary failures to start an app (download, runtime, network).

    The n-th failure in a row waits ``base_s * 2**(n-1)`` up to ``max_s``; a success
    (:meth:`forget`) starts counting from zero again.
    """

    base_s: float = 2.0
    max_s: float = 300.0
    failures: dict[str, int] = field(default_factory=dict)
    retry_at: dict[str, float] = field(default_factory=dict)
    delay_s: dict[str, float] = field(default_factory=dict)

    def failed(self, uuid: str, now: float) -> float:
        n = self.failures.get(uuid, 0) + 1
        self.failures[uuid] = n
        delay = exponential_delay(n, self.base_s, self.max_s)
        self.delay_s[uuid] = delay
        self.retry_at[uuid] = now + delay
        return delay

    def waiting(self, uuid: str, now: float) -> float:
        """Seconds left before ``uuid`` may be tried again (0: now)."""
        return max(0.0, self.retry_at.get(uuid, now) - now)

    def forget(self, uuid: str) -> None:
        for table in (self.failures, self.retry_at, self.delay_s):
            table.pop(uuid, None)
