"""What an image download may do now: the node's download window and its rate share.

One :class:`DownloadGate` per agent, shared by every download (app images and
pre-fetches).  The reconciler sets the node's :class:`~protocol.downloads.DownloadPolicy`
from each desired state (:meth:`DownloadGate.set_policy`); the image store asks before a
download starts (:meth:`check`, which raises :class:`DownloadDeferred` while the window is
closed) and after every piece of it (:meth:`take`: a token bucket that sleeps to hold the
rate, and stops the download when the window closes; the partial file is resumed later
with an HTTP Range request).

The bucket holds at most ``burst_s`` seconds of the rate (0.25 s by default), so the rate
seen by the server over any few seconds is the cap; several downloads at once share it.
Time comes from the injected clock; waits go through ``sleep`` (tests pass a fake).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from node_agent.clock import SYSTEM_CLOCK, Clock
from node_agent.errors import TemporaryError
from protocol.downloads import DownloadPolicy

__all__ = ["DownloadDeferred", "DownloadGate", "TokenBucket"]

MAX_SLEEP_S = 0.5
"""A rate wait is cut into pieces this long, so a window closing or a new policy is seen."""


class DownloadDeferred(TemporaryError):
    """The download window is closed: the download waits (nothing is wrong)."""

    def __init__(self, message: str, opens_at: float | None) -> None:
        super().__init__(message)
        self.opens_at = opens_at


class TokenBucket:
    """``rate`` bytes per second with a burst of ``burst_s`` seconds of it."""

    def __init__(self, rate: float, burst_s: float, clock: Clock) -> None:
        self.rate = rate
        self.capacity = max(rate * burst_s, 1.0)
        self.clock = clock
        self.tokens = self.capacity
        self.at = clock.monotonic()

    def debt_s(self, n: int) -> float:
        """Take ``n`` bytes' worth; how long to wait before the bytes may go on."""
        now = self.clock.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class DownloadGate:
    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
        burst_s: float = 0.25,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.burst_s = burst_s
        self.policy = DownloadPolicy()
        self._bucket: TokenBucket | None = None
        self._lock = threading.Lock()

    def set_policy(self, policy: DownloadPolicy | None) -> None:
        policy = policy or DownloadPolicy()
        with self._lock:
            if policy == self.policy:
                return
            self.policy = policy
            self._bucket = (
                TokenBucket(policy.rate_bps, self.burst_s, self.clock) if policy.rate_bps else None
            )

    @property
    def rate_bps(self) -> float | None:
        return self.policy.rate_bps

    def opens_at(self) -> float | None:
        """None when downloads may run now, else when the window opens (0: unknown)."""
        window = self.policy.window
        if window is None:
            return None
        state = window.state(self.clock.time())
        return None if state.open else (state.opens_at or 0.0)

    def check(self, what: str) -> None:
        """Raise :class:`DownloadDeferred` while the download window is closed."""
        opens = self.opens_at()
        if opens is not None:
            assert self.policy.window is not None
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(opens)) if opens else "never"
            raise DownloadDeferred(
                f"{what}: waits for the download window {self.policy.window.describe()}"
                f" (opens {when})",
                opens or None,
            )

    def take(self, n: int, what: str) -> None:
        """Account ``n`` bytes just received: wait as the rate share asks; stop (raise
        :class:`DownloadDeferred`) when the window has closed."""
        while True:
            with self._lock:
                bucket = self._bucket
                wait = bucket.debt_s(n) if bucket is not None else 0.0
            n = 0
            self.check(what)
            if wait <= 0:
                return
            self.sleep(min(wait, MAX_SLEEP_S))
            if wait <= MAX_SLEEP_S:
                return
