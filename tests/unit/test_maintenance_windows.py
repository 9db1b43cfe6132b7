"""Maintenance windows: cron schedules in a time zone, open for a grace period."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from pydantic import ValidationError

from protocol.windows import CronError, Window, parse_cron

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def at(text: str, zone: dt.tzinfo = dt.UTC) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def test_a_daily_window_is_open_from_its_firing_for_the_grace_period():
    w = Window(cron="0 2 * * *", time_zone="UTC", grace_s=3600)
    assert not w.is_open(at("2026-03-10 01:59"))
    assert w.is_open(at("2026-03-10 02:00"))
    assert w.is_open(at("2026-03-10 02:59:59"))
    assert not w.is_open(at("2026-03-10 03:00"))


def test_a_closed_window_says_when_it_opens_and_an_open_one_when_it_closes():
    w = Window(cron="30 22 * * *", time_zone="UTC", grace_s=1800)
    closed = w.state(at("2026-03-10 12:00"))
    assert (closed.open, closed.opens_at) == (False, at("2026-03-10 22:30"))
    opened = w.state(at("2026-03-10 22:45"))
    assert (opened.open, opened.closes_at) == (True, at("2026-03-10 23:00"))


def test_the_time_zone_decides_the_wall_clock_hour_also_across_daylight_saving():
    w = Window(cron="0 2 * * *", time_zone="Europe/Berlin", grace_s=3600)
    assert w.is_open(at("2026-01-15 01:30"))  # 02:30 CET = 01:30 UTC
    assert w.is_open(at("2026-07-15 00:30"))  # 02:30 CEST = 00:30 UTC
    assert not w.is_open(at("2026-07-15 01:30"))


def test_a_window_spanning_midnight_stays_open_into_the_next_day():
    w = Window(cron="0 23 * * *", time_zone="UTC", grace_s=3 * 3600)
    assert w.is_open(at("2026-03-11 01:30"))
    assert w.state(at("2026-03-11 01:30")).closes_at == at("2026-03-11 02:00")


def test_weekdays_ranges_lists_and_steps_follow_cron():
    w = Window(cron="*/15 8-9 * * 1-5", time_zone="UTC", grace_s=60)  # weekdays only
    assert w.is_open(at("2026-03-10 08:45"))  # a Tuesday
    assert not w.is_open(at("2026-03-10 08:46"))
    assert not w.is_open(at("2026-03-14 08:45"))  # a Saturday
    assert w.state(at("2026-03-14 08:45")).opens_at == at("2026-03-16 08:00")
    sunday = parse_cron("0 0 * * 7")
    assert sunday.weekdays == frozenset({0})


def test_both_day_fields_restricted_match_either_as_in_cron():
    w = Window(cron="0 3 1 * 5", time_zone="UTC", grace_s=60)  # the 1st, or any Friday
    assert w.is_open(at("2026-04-01 03:00"))  # a Wednesday, the 1st
    assert w.is_open(at("2026-04-03 03:00"))  # a Friday


def test_consecutive_firings_inside_the_grace_keep_the_window_open():
    w = Window(cron="0 * * * *", time_zone="UTC", grace_s=3600)
    state = w.state(at("2026-03-10 05:30"))
    assert state.open and state.closes_at is not None
    assert state.closes_at > at("2026-03-10 06:00")


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 2 * *", "5 fields"),
        ("61 2 * * *", "minute"),
        ("0 25 * * *", "hour"),
        ("0 2 * * mon", "weekday"),
        ("0 2 */0 * *", "step"),
        ("0 2 31 2 *", "never fires"),
    ],
)
def test_a_bad_cron_is_refused_naming_what_is_wrong(cron: str, words: str):
    with pytest.raises((ValidationError, CronError)) as exc:
        Window(cron=cron, time_zone="UTC")
    assert words in str(exc.value)


def test_an_unknown_time_zone_and_a_tiny_or_huge_grace_are_refused():
    for bad in (
        {"time_zone": "Mars/Olympus"},
        {"grace_s": 1},
        {"grace_s": 30 * 86400},
        {"grace_s": float("nan")},
    ):
        with pytest.raises(ValidationError):
            Window.model_validate({"cron": "0 2 * * *", **bad})
