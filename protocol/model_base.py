"""The one base of every protocol model, and the bounded number types they share.

Every message and document on the wire is a :class:`StrictModel`: unknown fields are
refused, instances are frozen, and a float that is ``inf`` or ``nan`` is refused
(``allow_inf_nan=False``), so every number that crosses the wire is finite; the types
below give each kind of number its explicit range.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_COUNT", "Duration", "StrictModel", "Timestamp"]

MAX_TIMESTAMP = 2.0**33
"""Seconds since the epoch up to the year 2242: far enough, and finite."""
MAX_DURATION_S = 10.0 * 365 * 86400
MAX_COUNT = 2**53
"""The largest counter or byte count on the wire (exact in a JSON double)."""


class StrictModel(BaseModel):
    """Closed (``extra="forbid"``), immutable, finite numbers only."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Timestamp = Annotated[float, Field(ge=0.0, le=MAX_TIMESTAMP)]
"""A wall-clock time, seconds since the epoch."""
Duration = Annotated[float, Field(ge=0.0, le=MAX_DURATION_S)]
"""A length of time in seconds (at most ten years)."""
