"""The one request-body path of every JSON endpoint (device API, operator API).

    json_body()                   the body parsed by :func:`protocol.bounded_json.load_json`
    optional_json_body()          the same, or None when the body is empty ("no options")

Size and nesting depth are bounded before anything is parsed; numbers must be finite and
integers at most 19 digits.  Refusals are :class:`controller.errors.ApiError`:

    413 too_large    more than the endpoint's limit (also Werkzeug's MAX_CONTENT_LENGTH)
    422 not_json     not JSON (bad UTF-8, a syntax error, an empty body where one is needed)
    422 too_deep     nested deeper than the limit (never a RecursionError)
    422 bad_number   NaN, Infinity, 1e400, a 20-digit integer

A body of the wrong shape (``0``, ``false``, ``[]`` where an object is wanted) is the
endpoint model's 422 (:func:`controller.domain.common.parse`); nothing falls back to ``{}``.
"""

from __future__ import annotations

from typing import Any

from flask import request

from controller.errors import ApiError
from protocol.bounded_json import JsonRefused, load_json

__all__ = ["MAX_JSON_BODY_BYTES", "MAX_JSON_DEPTH", "json_body", "optional_json_body"]

MAX_JSON_BODY_BYTES = 1024 * 1024
"""Largest JSON body (the device API's large messages — inventories, quotes — fit)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting any endpoint's model needs (the deepest is below 10)."""

_STATUS = {"too_large": 413}


def _raw(max_bytes: int) -> bytes:
    length = request.content_length
    if length is not None and length > max_bytes:
        raise ApiError(413, "too_large", f"body of {length} bytes is over the {max_bytes} limit")
    return request.get_data(cache=True)


def _load(raw: bytes, max_bytes: int, max_depth: int) -> Any:
    try:
        return load_json(raw, max_bytes=max_bytes, max_depth=max_depth)
    except JsonRefused as exc:
        raise ApiError(_STATUS.get(exc.reason, 422), exc.reason, str(exc)) from exc


def json_body(max_bytes: int = MAX_JSON_BODY_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The request's JSON body (any JSON value: the endpoint's model checks its shape)."""
    raw = _raw(max_bytes)
    if not raw.strip():
        raise ApiError(422, "not_json", "the body is empty: send a JSON object")
    return _load(raw, max_bytes, max_depth)


def optional_json_body(
    max_bytes: int = MAX_JSON_BODY_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any | None:
    """The JSON body, or None when there is none (empty or only whitespace)."""
    raw = _raw(max_bytes)
    if not raw.strip():
        return None
    return _load(raw, max_bytes, max_depth)
