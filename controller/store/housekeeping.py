"""Periodic pruning (a background job, run by the leader only): expired single-use request
ids and metric samples older than the retention.  Requests never delete anything
themselves, so two of them never contend over the same old rows."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete

from controller.store.database import Database
from controller.store.models import MetricSample, SeenRequest, utcnow

__all__ = ["METRICS_RETENTION", "prune"]

METRICS_RETENTION = dt.timedelta(days=1)
"""How long metric samples are kept (the UI charts at most a day)."""


def prune(db: Database) -> int:
    """Delete what has expired; returns how many rows."""
    now = utcnow()
    with db.transaction() as s:
        gone = s.execute(delete(SeenRequest).where(SeenRequest.expires_at < now)).rowcount  # type: ignore[attr-defined]
        gone += s.execute(  # type: ignore[attr-defined]
            delete(MetricSample).where(MetricSample.at < now - METRICS_RETENTION)
        ).rowcount
    return int(gone or 0)
