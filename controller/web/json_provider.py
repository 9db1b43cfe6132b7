"""Flask's JSON provider for every response: strict JSON only (no NaN/Infinity).

Stored values are validated finite before they are written, so a refusal here is a bug,
not an answer: it raises rather than send ``Infinity``, which no JSON parser reads.
"""

from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider

__all__ = ["StrictJSONProvider"]


class StrictJSONProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs["allow_nan"] = False
        return super().dumps(obj, **kwargs)
