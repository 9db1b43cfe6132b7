"""An app's console lines without the container runtime's CRI prefix, at the agent."""

from __future__ import annotations

import datetime as dt

from node_agent.log_shipper import MAX_LINE, console_lines
from protocol.console_lines import parse_console_line, strip_runtime_prefix


def test_the_runtime_prefix_is_stripped_from_a_console_line():
    assert strip_runtime_prefix("2026-12-03T10:00:00.123456789Z stdout F hello") == "hello"
    assert strip_runtime_prefix("2026-12-03T10:00:00.5+01:00 stderr F oops: x") == "oops: x"
    assert strip_runtime_prefix("stdout F hello") == "hello"
    assert strip_runtime_prefix("stderr P partial") == "partial"
    assert strip_runtime_prefix("2026-12-03T10:00:00Z stdout F") == ""


def test_a_line_without_the_prefix_is_kept_whole():
    for line in (
        "hello",
        "stdout is where it goes",
        "stdout Fhello",
        "Booting Linux on physical CPU 0x0",
        " stdout F indented",
        "2026-12-03 stdout F not a CRI time",
    ):
        assert strip_runtime_prefix(line) == line


def test_the_prefix_gives_the_stream_the_tag_and_the_time():
    line = parse_console_line("2026-12-03T10:00:00.123456789Z stderr P  two  spaces ")
    assert line.stream == "stderr" and line.partial and line.text == " two  spaces "
    want = dt.datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=dt.UTC).timestamp()
    assert line.ts == want
    shifted = parse_console_line("2026-12-03T11:00:00+01:00 stdout F x")
    assert shifted.ts == dt.datetime(2026, 12, 3, 10, tzinfo=dt.UTC).timestamp()
    plain = parse_console_line("plain")
    assert (plain.stream, plain.partial, plain.ts) == (None, False, None)


def test_the_agent_ships_the_text_at_the_time_podman_wrote_it():
    lines = console_lines(
        ["2026-12-03T10:00:00Z stdout F hello", "a VM's console line", "stdout F "], 5.0
    )
    assert [x["msg"] for x in lines] == ["hello", "a VM's console line"]
    assert lines[0]["ts"] == dt.datetime(2026, 12, 3, 10, tzinfo=dt.UTC).timestamp()
    assert lines[1]["ts"] == 5.0


def test_a_long_lines_parts_are_joined_per_stream_and_nothing_is_lost():
    raws = [
        "2026-12-03T10:00:00Z stdout P first ",
        "2026-12-03T10:00:01Z stderr F an error",
        "2026-12-03T10:00:02Z stdout P half ",
        "2026-12-03T10:00:03Z stdout F done",
        "2026-12-03T10:00:04Z stderr P cut off",
    ]
    assert [x["msg"] for x in console_lines(raws, 0.0)] == [
        "an error",
        "first half done",
        "cut off",
    ]
    huge = console_lines(["stdout P " + "x" * MAX_LINE, "stdout F yz"], 0.0)
    assert [len(x["msg"]) for x in huge] == [MAX_LINE, 2]
