"""The bounded JSON loader every received body goes through (protocol/bounded_json.py)."""

from __future__ import annotations

import pytest

from protocol.bounded_json import JsonRefused, dump_json, load_json


def _reason(data: bytes, **bounds: int) -> str:
    with pytest.raises(JsonRefused) as refused:
        load_json(data, **bounds)
    return refused.value.reason


def test_ordinary_json_parses():
    assert load_json(b'{"a": [1, 2.5, "x", null, true], "b": {"c": -3}}') == {
        "a": [1, 2.5, "x", None, True],
        "b": {"c": -3},
    }


def test_a_10000_deep_body_is_refused_before_parsing_without_recursion_error():
    assert _reason(b"[" * 10_000 + b"]" * 10_000) == "too_deep"
    assert _reason(b'{"a":' * 10_000 + b"1" + b"}" * 10_000) == "too_deep"


def test_depth_is_counted_outside_strings_only():
    assert load_json(b'{"a": "[[[[{{{{"}', max_depth=1) == {"a": "[[[[{{{{"}
    assert load_json(b'["\\"[[[["]', max_depth=1) == ['"[[[[']


def test_the_depth_limit_is_inclusive():
    assert load_json(b"[" * 8 + b"]" * 8, max_depth=8) == [[[[[[[[]]]]]]]]
    assert _reason(b"[" * 9 + b"]" * 9, max_depth=8) == "too_deep"


def test_a_body_over_the_size_limit_is_refused_before_anything_else():
    assert _reason(b"[" * 100, max_bytes=99) == "too_large"


@pytest.mark.parametrize(
    "data",
    [b"NaN", b"[Infinity]", b'{"t": -Infinity}', b"1e400", b"-1e400", b"1" + b"0" * 400],
)
def test_non_finite_and_huge_numbers_are_refused(data):
    assert _reason(data) == "bad_number"


def test_long_digit_runs_inside_strings_floats_and_keys_are_fine():
    data = b'{"12345678901234567890123": "98765432109876543210", "f": 1.000000000000000000001}'
    assert load_json(data)["12345678901234567890123"] == "98765432109876543210"


def test_integers_up_to_19_digits_parse():
    assert load_json(b"[9999999999999999999, -9999999999999999999]") == [
        9999999999999999999,
        -9999999999999999999,
    ]
    assert _reason(b"[10000000000000000000]") == "bad_number"


@pytest.mark.parametrize("data", [b"", b"{", b'{"a": 1,}', b'"\xff"', b'"unterminated [[['])
def test_invalid_json_is_not_json(data):
    assert _reason(data) == "not_json"


def test_many_escaped_quotes_are_scanned_in_linear_time():
    assert _reason(b'"' + b'\\"' * 500_000) == "not_json"


def test_dump_json_refuses_nan_and_round_trips():
    with pytest.raises(JsonRefused):
        dump_json({"x": float("inf")})
    assert load_json(dump_json({"b": [1, "2"], "a": 0.5})) == {"a": 0.5, "b": [1, "2"]}
