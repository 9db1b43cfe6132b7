"""What a node last reported, read back through the wire schema.

The device API stores each ``info`` message (validated on arrival) as JSON on the node
row; every reader goes through these functions, so the controller works with
``InfoMessage``/``AppStatus``/``AppState`` and never walks the stored dict by hand.
A stored report that no longer fits the schema (written by an older controller) reads
as "nothing reported".
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pydantic import ValidationError

from controller.store.models import Node, utcnow
from protocol.messages import AppState, AppStatus, InfoMessage

__all__ = [
    "AppState",
    "app_status",
    "app_statuses",
    "online_cutoff",
    "reported",
    "reported_generation",
]

log = logging.getLogger(__name__)


def reported(info: dict[str, Any] | None) -> InfoMessage | None:
    """The node's last ``info`` (the stored JSON of a node row), or None."""
    if not info:
        return None
    try:
        return InfoMessage.model_validate(info)
    except ValidationError as exc:
        log.warning("a stored node report does not fit the schema (%d errors)", exc.error_count())
        return None


def app_statuses(info: dict[str, Any] | None) -> dict[str, AppStatus]:
    """App uuid → its last reported status."""
    msg = reported(info)
    return {a.uuid: a for a in msg.apps} if msg else {}


def app_status(node: Node, app_uuid: str) -> AppStatus | None:
    """The status the node last reported for the app, or None."""
    return app_statuses(node.info).get(app_uuid)


def reported_generation(node: Node) -> int:
    """The config generation the node last reported running (-1: none yet)."""
    msg = reported(node.info)
    return msg.config_generation if msg else -1


ONLINE_GRACE_S = 30.0


def online_cutoff(config_interval_s: float, now: dt.datetime | None = None) -> dt.datetime:
    """A node last heard from before this is offline (three poll intervals and a grace)."""
    return (now or utcnow()) - dt.timedelta(seconds=3 * config_interval_s + ONLINE_GRACE_S)
