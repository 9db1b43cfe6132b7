"""The one base of every protocol model, and the bounded number types they share.

Every message and document on the wire is a :class:`StrictModel`: unknown fields are
refused, instances are frozen, and a float that is ``inf`` or ``nan`` is refused
(``allow_inf_nan=False``), so every number that crosses the wire is finite; the types
below give each kind of number its explicit range.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MAX_COUNT", "Duration", "NoBoolNumbers", "StrictModel", "Timestamp"]

MAX_TIMESTAMP = 2.0**33
"""Seconds since the epoch up to the year 2242: far enough, and finite."""
MAX_DURATION_S = 10.0 * 365 * 86400
MAX_COUNT = 2**53
"""The largest counter or byte count on the wire (exact in a JSON double)."""


def _takes_bool(annotation: Any) -> bool:
    """Whether a field of this type may hold ``true``/``false`` (bool, Any, or a union or
    container whose members may)."""
    if annotation is bool or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _takes_bool(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_takes_bool(a) for a in typing.get_args(annotation))
    return origin is not None and origin is not tuple and origin is not typing.Literal


def _only_bool(annotation: Any) -> bool:
    """Whether a field of this type holds a boolean and nothing else (``None`` aside)."""
    if annotation is bool:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _only_bool(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(members) and all(_only_bool(a) for a in members)
    return False


class NoBoolNumbers(BaseModel):
    """Booleans and numbers kept apart, both ways.  pydantic's lax mode reads ``true`` and
    ``false`` as 1 and 0, and ``0``, ``1``, ``"yes"`` or ``"off"`` as booleans: here a field
    takes a boolean only where its type says bool, and a bool field takes only a boolean
    (a query string's ``true``/``1`` too where the model says ``text_booleans``)."""

    text_booleans: ClassVar[bool] = False
    """A query string's model: every value is text, so ``"true"``/``"0"`` are booleans."""

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(field.alias or name)
                if isinstance(value, bool):
                    if not _takes_bool(field.annotation):
                        raise ValueError(f"{name}: {str(value).lower()} where a number is expected")
                elif (
                    value is not None
                    and not (cls.text_booleans and isinstance(value, str))
                    and _only_bool(field.annotation)
                ):
                    raise ValueError(f"{name}: {value!r} where true or false is expected")
        return data


class StrictModel(NoBoolNumbers):
    """Closed (``extra="forbid"``), immutable, finite numbers only, no boolean for a number."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Timestamp = Annotated[float, Field(ge=0.0, le=MAX_TIMESTAMP)]
"""A wall-clock time, seconds since the epoch."""
Duration = Annotated[float, Field(ge=0.0, le=MAX_DURATION_S)]
"""A length of time in seconds (at most ten years)."""
