"""Maintenance windows: a cron schedule in a time zone, each firing open for a grace period.

``Window(cron="0 2 * * *", time_zone="Europe/Berlin", grace_s=3600)`` is open every day from
02:00 to 03:00 Berlin time.  The cron expression has the five classic fields (minute hour
day-of-month month day-of-week; ``*``, ``a-b``, ``a,b``, ``*/n``, ``a-b/n``; Sunday is 0 or
7; when both day fields are restricted a day matching either counts, as in cron).  Local
wall-clock times are turned into instants with :mod:`zoneinfo` (a time skipped by a DST
change moves forward with it).

Both sides use it: the controller for switch-over windows (a rollout switches a node only
while its window is open) and to say when a window opens; the agent for download windows
(it downloads only while its window is open).  Pure functions of the instant given.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from protocol.model_base import StrictModel

__all__ = ["CronError", "CronSchedule", "Window", "WindowState", "parse_cron"]

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7))
_SEARCH_DAYS = 366 * 5
"""How far ahead (or back) a firing is searched: covers 29 February on any weekday."""
MAX_GRACE_S = 7 * 86400.0
_MAX_EXTEND = 64


class CronError(ValueError):
    """A cron expression that cannot be parsed, with the field at fault."""


@dataclass(frozen=True)
class CronSchedule:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday … 6 = Saturday (7 folded into 0)."""
    any_day: bool
    any_weekday: bool

    def day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        by_dom = day.day in self.days
        by_dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return by_dow
        if self.any_weekday:
            return by_dom
        return by_dom or by_dow


def _field(text: str, name: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, _, step_text = part.partition("/")
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{name}: step {step_text!r} is not a positive number")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, _, b = part.partition("-")
            if not (a.isdigit() and b.isdigit()):
                raise CronError(f"{name}: {part!r} is not a range of numbers")
            start, end = int(a), int(b)
        elif part.isdigit():
            start = end = int(part)
            if step != 1:
                end = high
        else:
            raise CronError(f"{name}: {part!r} is not a number, range or *")
        if not low <= start <= end <= high:
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


@functools.lru_cache(maxsize=256)
def parse_cron(expr: str) -> CronSchedule:
    """The schedule of a five-field cron expression (CronError names the bad field)."""
    parts = expr.split()
    if len(parts) != 5:
        raise CronError(f"cron needs 5 fields (minute hour day month weekday), got {len(parts)}")
    sets = [_field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return CronSchedule(
        minutes=tuple(sorted(sets[0])),
        hours=tuple(sorted(sets[1])),
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )


@dataclass(frozen=True)
class WindowState:
    open: bool
    opens_at: float | None
    """Closed: when it next opens (None: never within five years)."""
    closes_at: float | None
    """Open: when it closes (at the earliest: a window that fires again before it closes
    is followed for 64 firings)."""


class Window(StrictModel):
    """A recurring window (see the module docstring)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-rules": [
                "cron syntax: five fields (minute hour day month weekday), each a number,"
                " range, list or step within its bounds",
                "time_zone is an IANA time zone name",
                "cron fires at least once (within five years)",
            ]
        }
    )

    cron: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    """Five fields: minute hour day month weekday."""
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    grace_s: float = Field(default=3600.0, ge=60.0, le=MAX_GRACE_S)
    """How long the window stays open after each firing of ``cron``."""

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            parse_cron(value)
        except CronError as exc:
            raise ValueError(f"cron syntax: {exc}") from exc
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        _zone(value)
        return value

    @model_validator(mode="after")
    def _fires(self) -> Window:
        if self._search(0.0, forward=True) is None:
            raise ValueError(f"cron {self.cron!r} never fires")
        return self

    # -- when ----------------------------------------------------------------------------

    def state(self, now: float) -> WindowState:
        """Whether the window is open at ``now`` (seconds since the epoch), and until when
        or from when."""
        last = self._search(now, forward=False)
        if last is not None and now < last + self.grace_s:
            following = self._search(last + 60.0, forward=True)
            closes = last + self.grace_s
            # firings inside the grace keep it open: extend across them (a bounded look)
            for _ in range(_MAX_EXTEND):
                if following is None or following > closes:
                    break
                closes = max(closes, following + self.grace_s)
                following = self._search(following + 60.0, forward=True)
            return WindowState(True, None, closes)
        return WindowState(False, self._search(now, forward=True), None)

    def is_open(self, now: float) -> bool:
        return self.state(now).open

    def describe(self) -> str:
        return f"{self.cron} ({self.time_zone}, {self.grace_s / 60:g} min)"

    def _search(self, at: float, forward: bool) -> float | None:
        """The first firing at or after ``at`` (forward) or at or before it (backward)."""
        zone = _zone(self.time_zone)
        sched = parse_cron(self.cron)
        local = dt.datetime.fromtimestamp(at, zone).replace(tzinfo=None)
        minute = local.replace(second=0, microsecond=0)
        if forward and minute < local:
            minute += dt.timedelta(minutes=1)
        day = minute.date()
        step = dt.timedelta(days=1 if forward else -1)
        for i in range(_SEARCH_DAYS):
            if sched.day_matches(day):
                times = [(h, m) for h in sched.hours for m in sched.minutes]
                if not forward:
                    times.reverse()
                for h, m in times:
                    when = dt.datetime.combine(day, dt.time(h, m))
                    if i == 0 and (when < minute if forward else when > minute):
                        continue
                    return when.replace(tzinfo=zone).timestamp()
            day += step
        return None


@functools.lru_cache(maxsize=128)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
