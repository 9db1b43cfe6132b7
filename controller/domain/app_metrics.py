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

__all__ = ["MAX_SERIES_POINTS", "app_metrics", "app_series_of"]

MAX_SERIES_POINTS = 720
"""Per node: half a day of one-minute samples, or an hour of 5 s ones."""
CHUNK = 500
"""Nodes per samples query (SQLite's bound-parameter limit stays far away)."""


def _of_app(data: dict[str, Any], app_uuid: str) -> dict[str, Any] | None:
    apps = data.get("apps") if isinstance(data, dict) else None
    for entry in apps if isinstance(apps, list) else []:
        if isinstance(entry, dict) and entry.get("uuid") == app_uuid:
            return entry
    return None


def app_series_of(
    s: Session, nodes: list[Node], app_uuid: str, since: dt.datetime
) -> dict[int, list[dict[str, Any]]]:
    """Per node (node id → series): ``[{at, values, labels}]`` of the app's reports since
    ``since`` (oldest first, at most :data:`MAX_SERIES_POINTS`, one point per distinct
    report); one query per :data:`CHUNK` nodes, not one per node."""
    samples: dict[int, list[Any]] = {}
    ids = [n.id for n in nodes]
    for start in range(0, len(ids), CHUNK):
        rows = s.execute(
            select(MetricSample.node_id, MetricSample.data)
            .where(MetricSample.node_id.in_(ids[start : start + CHUNK]), MetricSample.at >= since)
            .order_by(MetricSample.id)
        ).all()
        for node_id, data in rows:
            samples.setdefault(node_id, []).append(data)
    return {node_id: _series(rows, app_uuid) for node_id, rows in samples.items()}


def _series(rows: list[Any], app_uuid: str) -> list[dict[str, Any]]:
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
    running = list(nodes_of_app(s, app))
    series_of = app_series_of(s, running, app.uuid, since) if series else {}
    for node in running:
        entry = _of_app(node.metrics or {}, app.uuid)
        item: dict[str, Any] = {
            "node": node.serial,
            "metrics_at": node.metrics_at.isoformat() + "Z" if node.metrics_at else None,
            "counters": {k: v for k, v in (entry or {}).items() if k not in ("uuid", "reported")},
            "reported": (entry or {}).get("reported"),
        }
        if series:
            item["series"] = series_of.get(node.id, [])
        nodes.append(item)
    return {"app": app.name, "uuid": app.uuid, "nodes": nodes}
