"""Fields added to a wire model are left out of its JSON while they hold their default.

A node running an older agent refuses a document with a field it does not know (every
model is ``extra="forbid"``), and a content hash over a document must not change because a
new field appeared.  So a model that gains a field lists it with its default in
:func:`omit_defaults` (a ``model_serializer(mode="wrap")``): configs that do not use the new
feature stay byte-for-byte what they were, and older agents keep accepting them (and
so can still receive the agent release that knows the field).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["omit_defaults"]


def omit_defaults(data: Any, defaults: Mapping[str, Any]) -> Any:
    """``data`` (a model's serialized dict) without the listed fields at their defaults."""
    if not isinstance(data, dict):
        return data
    return {k: v for k, v in data.items() if not (k in defaults and v == defaults[k])}
