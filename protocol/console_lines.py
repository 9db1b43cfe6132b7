"""An app's console line without the container runtime's prefix.

podman's ``k8s-file`` log driver writes each line in the CRI format
``<RFC 3339 time> <stream> <tag> <text>``: the stream is ``stdout`` or ``stderr``, the
tag ``F`` (a full line) or ``P`` (a part of a longer line, continued by the next
line of the same stream).  The agent parses it where it reads the file; the controller
strips the prefix again from what older agents shipped before showing a line.

    parse_console_line(raw)    → ConsoleLine(text, stream, partial, ts)
    strip_runtime_prefix(raw)  → the text only (a line without the prefix as it is)
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

from protocol.model_base import MAX_TIMESTAMP

__all__ = ["ConsoleLine", "parse_console_line", "strip_runtime_prefix"]

_CRI = re.compile(
    r"(?:(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<zone>Z|[+-]\d\d:\d\d) )?"
    r"(?P<stream>stdout|stderr) (?P<tag>[FP])(?: (?P<text>.*))?",
    re.DOTALL,
)


class ConsoleLine(NamedTuple):
    text: str
    stream: str | None = None
    """``stdout`` or ``stderr``; None for a line without the runtime's prefix (a VM's console)."""
    partial: bool = False
    """A part of a longer line: the stream's next line continues it."""
    ts: float | None = None
    """When the runtime wrote it (seconds since the epoch), when the prefix says."""


def _timestamp(match: re.Match[str]) -> float | None:
    if not match["time"]:
        return None
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    micros = (match["frac"] or "").ljust(6, "0")[:6]  # nanoseconds → microseconds
    try:
        when = dt.datetime.fromisoformat(f"{match['time']}.{micros}{zone}")
    except ValueError:
        return None
    ts = when.timestamp()
    return ts if 0 <= ts <= MAX_TIMESTAMP else None


def parse_console_line(raw: str) -> ConsoleLine:
    """Split a CRI-format line into its parts; any other line is all text."""
    match = _CRI.fullmatch(raw)
    if match is None:
        return ConsoleLine(raw)
    return ConsoleLine(
        match["text"] or "",
        match["stream"],
        match["tag"] == "P",
        _timestamp(match),
    )


def strip_runtime_prefix(raw: str) -> str:
    """The line's text without a CRI ``[<time> ]<stream> <tag> `` prefix."""
    return parse_console_line(raw).text
