"""The number types of the wire schema: every number finite and in a stated range.

JSON has no bound of its own and Python's parser reads ``1e400``, ``NaN`` and 400-digit
integers; these types are what every model of ``protocol`` (and the controller's request
bodies) use instead of a bare ``int``/``float``::

    Generation      0 … 2**53-1      config generations (-1 allowed where it means "none")
    Counter         0 … 2**53-1      cumulative counters, sequence numbers
    ByteCount       0 … 2**53-1      sizes and byte counters (8 PiB)
    EpochSeconds    0 … 253402300799 a time (seconds since 1970, up to 9999-12-31)
    Seconds         0 … 10**12       durations and CPU-seconds totals (~31,700 years)

2**53-1 is the largest integer every JSON reader (JavaScript's too) holds exactly; it also
fits a 64-bit database column.  ``STRICT_NUMBERS`` is the model config that refuses NaN
and ±Infinity (pydantic's ``allow_inf_nan=False``).
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import ConfigDict, Field

__all__ = [
    "MAX_EPOCH_S",
    "MAX_SAFE_INT",
    "MAX_SECONDS",
    "STRICT_NUMBERS",
    "ByteCount",
    "Counter",
    "EpochSeconds",
    "Generation",
    "MaybeGeneration",
    "Seconds",
]

MAX_SAFE_INT: Final = 2**53 - 1
MAX_EPOCH_S: Final = 253402300799.0
MAX_SECONDS: Final = 1e12

STRICT_NUMBERS = ConfigDict(allow_inf_nan=False)

Generation = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
MaybeGeneration = Annotated[int, Field(ge=-1, le=MAX_SAFE_INT)]
"""A generation, or -1: none yet."""
Counter = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
ByteCount = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
EpochSeconds = Annotated[float, Field(ge=0, le=MAX_EPOCH_S, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
