"""The agent's clock, injected where time decides behaviour (back-offs, start windows).

Production code uses :data:`SYSTEM_CLOCK`; unit tests pass a fake whose time only moves
when the test advances it, so back-off tests never sleep.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    """Monotonic time for intervals, wall time for what is reported."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, deadlines)."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (timestamps in reports)."""
        ...


class SystemClock:
    """The host's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM_CLOCK: Clock = SystemClock()
