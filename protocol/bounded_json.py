"""JSON from untrusted peers: size and nesting depth bounded BEFORE parsing, numbers finite.

One loader for every body either side receives (device requests, operator API bodies,
envelope payloads)::

    value = load_json(raw_bytes)                     # defaults: 8 MiB, depth 64
    value = load_json(raw_bytes, max_bytes=64 << 10, max_depth=16)

Refused, as :class:`JsonRefused` (a ``ValueError``) with a ``reason`` code:

    too_large    more than ``max_bytes`` (checked first: nothing else is read)
    too_deep     arrays/objects nested deeper than ``max_depth`` (a linear pre-scan with
                 C-speed regex and accumulate, so a 10,000-deep body never reaches the
                 recursive parser and never raises RecursionError)
    bad_number   NaN, Infinity, a float that overflows (1e400) or an integer of more
                 than 19 digits (e.g. 10**400 written out; found by the same pre-scan)
    not_json     anything else the parser refuses (also bad UTF-8)

Python's ``json`` accepts NaN/Infinity and big integers by default; this loader never does.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "MAX_INT_DIGITS",
    "JsonRefused",
    "dump_json",
    "load_json",
]

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64
MAX_INT_DIGITS = 19
"""Longest integer literal accepted (|n| < 10**19, about the signed 64-bit range)."""

_DEPTH_DELTA = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
# a JSON string, escapes included; an unterminated one runs to the end (never rescanned,
# so a body of many escaped quotes stays linear)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JsonRefused(ValueError):
    """The body is not acceptable JSON; ``reason`` is one of the codes in the module doc."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# an integer literal (not a float's digits, not an exponent) longer than MAX_INT_DIGITS
_LONG_INT = re.compile(rb"(?<![0-9.eE+-])-?[0-9]{%d,}(?![0-9.eE])" % (MAX_INT_DIGITS + 1))


def _prescan(data: bytes, max_depth: int) -> None:
    """Refuse what would make the parser recurse deeply or build huge integers.

    Strings are removed first; the depth found is an upper bound of what the parser would
    reach (exact for valid JSON), computed without recursion.
    """
    outside = _STRING.sub(b"", data)
    brackets = outside.translate(None, _NOT_BRACKETS)
    depth = max(accumulate(map(_DEPTH_DELTA.__getitem__, brackets))) if brackets else 0
    if depth > max_depth:
        raise JsonRefused("too_deep", f"body nests {depth} levels deep (limit {max_depth})")
    if (found := _LONG_INT.search(outside)) is not None:
        digits = len(found.group().lstrip(b"-"))
        raise JsonRefused("bad_number", f"integer of {digits} digits is out of range")


def _refuse_constant(name: str) -> Any:
    raise JsonRefused("bad_number", f"{name} is not a number JSON allows here")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused("bad_number", f"number {text[:32]} is out of range")
    return value


def load_json(
    data: bytes | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Parse ``data`` as JSON within the bounds (see the module docstring)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise JsonRefused("too_large", f"body of {len(raw)} bytes is over the {max_bytes} limit")
    _prescan(raw, max_depth)
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except JsonRefused:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise JsonRefused("not_json", f"body is not JSON: {exc}") from exc


def dump_json(value: Any) -> bytes:
    """Compact, key-sorted JSON that :func:`load_json` reads back (NaN/inf refused)."""
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except ValueError as exc:
        raise JsonRefused("bad_number", f"cannot write JSON: {exc}") from exc
