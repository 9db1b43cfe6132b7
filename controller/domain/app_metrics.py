"""What an app reports about itself (fps, latency, detections, the device it chose, …), per
node it runs on: the latest report and a bounded series, read from the nodes' metrics.

The agent forwards each app's latest :class:`~protocol.app_config.AppReport` (posted to
the metadata service on its app network) in ``AppMetrics.reported``; the controller keeps
metrics as received (``nodes.metrics`` and ``metric_samples``), so this only reads.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.adapters import nodes_of_app
from controller.store.models import App, MetricSample, Node

__all__ = ["MAX_SERIES_POINTS", "app_metrics", "app_series"]

MAX_SERIES_POINTS = 720
"""Per node: half a day of one-minute samples, or an hour of 5 s ones."""


def _of_app(data: dict[str, Any], app_uuid: str) -> dict[str, Any] | None:
    apps = data.get("apps") if isinstance(data, dict) else None
    for entry in apps if isinstance(apps, list) else []:
        if isinstance(entry, dict) and entry.get("uuid") == app_uuid:
            return entry
    return None


def app_series(s: Session, node: Node, app_uuid: str, since: dt.datetime) -> list[dict[str, Any]]:
    """``[{at, values, labels}]`` of the app's reports on ``node`` since ``since`` (oldest
    first, at most :data:`MAX_SERIES_POINTS`, one point per distinct report)."""
    rows = s.scalars(
        select(MetricSample.data)
        .where(MetricSample.node_id == node.id, MetricSample.at >= since)
        .order_by(MetricSample.id)
    ).all()
    out: list[dict[str, Any]] = []
    for data in rows:
        entry = _of_app(data, app_uuid)
        reported = entry.get("reported") if entry else None
        if not isinstance(reported, dict) or not isinstance(reported.get("at"), int | float):
            continue
        if out and out[-1]["at"] == reported["at"]:
            continue  # the same report forwarded again
        point = {"at": reported["at"], "values": reported.get("values") or {}}
        out.append({**point, "labels": reported.get("labels") or {}})
    return out[-MAX_SERIES_POINTS:]


def app_metrics(s: Session, app: App, since: dt.datetime, series: bool = True) -> dict[str, Any]:
    """Per node the app runs on: its latest runtime counters, its latest own report and
    (``series``) the reports since ``since``."""
    nodes = []
    for node in nodes_of_app(s, app):
        entry = _of_app(node.metrics or {}, app.uuid)
        item: dict[str, Any] = {
            "node": node.serial,
            "metrics_at": node.metrics_at.isoformat() + "Z" if node.metrics_at else None,
            "counters": {k: v for k, v in (entry or {}).items() if k not in ("uuid", "reported")},
            "reported": (entry or {}).get("reported"),
        }
        if series:
            item["series"] = app_series(s, node, app.uuid, since)
        nodes.append(item)
    return {"app": app.name, "uuid": app.uuid, "nodes": nodes}
