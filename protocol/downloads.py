"""Image downloads as the controller shapes them and the agent reports them.

``NodeSettings.downloads`` (:class:`DownloadPolicy`) tells a node its share of its site's
download rate cap and its download window; the agent enforces both for every image it
fetches (app images and pre-fetches).  ``DesiredState.prefetch`` lists images to fetch
ahead of a switch-over (a rollout's next version) without running them; the agent says how
each goes in ``InfoMessage.prefetch`` (:class:`PrefetchStatus`).

Device-reported labels (:data:`DeviceLabels`) travel in ``InfoMessage.device_labels``:
what the node says about itself (``arch``, ``gpu``, ``site`` from its bundle, a local
file), kept apart from the operator's labels at the controller.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from protocol.model_base import MAX_COUNT, StrictModel, Timestamp
from protocol.windows import Window

__all__ = [
    "MAX_DEVICE_LABELS",
    "MAX_PREFETCH",
    "DeviceLabelKey",
    "DeviceLabelValue",
    "DeviceLabels",
    "DownloadPolicy",
    "PrefetchState",
    "PrefetchStatus",
]

MAX_PREFETCH = 16
MAX_DEVICE_LABELS = 32
MAX_RATE_BPS = 2.0**40
DeviceLabelKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
DeviceLabelValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{0,63}$")]
DeviceLabels = Annotated[
    dict[DeviceLabelKey, DeviceLabelValue], Field(max_length=MAX_DEVICE_LABELS)
]
PrefetchState = Literal["waiting", "downloading", "done", "failed"]


class DownloadPolicy(StrictModel):
    """How this node may download images (``NodeSettings.downloads``)."""

    rate_bps: float | None = Field(default=None, ge=1024.0, le=MAX_RATE_BPS)
    """This node's share of its group's download rate cap, bytes/s (None: unlimited)."""
    window: Window | None = None
    """Download only while this window is open (None: any time); a download running when
    it closes stops and resumes (HTTP Range) when it opens again."""


class PrefetchStatus(StrictModel):
    """One image of ``DesiredState.prefetch`` on the node."""

    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    state: PrefetchState
    done_bytes: int = Field(default=0, ge=0, le=MAX_COUNT)
    total_bytes: int = Field(default=0, ge=0, le=MAX_COUNT)
    rate_bps: float | None = Field(default=None, ge=0.0, le=MAX_RATE_BPS)
    """Bytes per second of the running download (None: not measured yet)."""
    opens_at: Timestamp | None = None
    """``waiting``: when the download window opens (node clock)."""
    error: Annotated[str, StringConstraints(max_length=512)] = ""
