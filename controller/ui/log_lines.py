"""Read side of the UI's log panels and downloads: the log lines nodes sent (``LogBatch``,
gzip'd JSON lines per source), oldest first, newest last.

    recent_logs(s, node, source, level)  a node's newest lines (the node page's panel)
    app_logs(s, app)                     an app's newest lines from the nodes it runs on
    log_text(db, where, level)           every stored line as text, a few batches a query

A line's text loses a container runtime's prefix here too (older agents shipped it);
``level`` keeps lines of that level and worse.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from controller.store.database import Database
from controller.store.models import App, Assignment, LogBatch, Node
from protocol.console_lines import strip_runtime_prefix

__all__ = [
    "LEVELS",
    "app_logs",
    "app_where",
    "level_filter",
    "log_text",
    "node_where",
    "recent_logs",
]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "ERR": "ERROR"}
SCAN_BATCHES = 100
"""A panel looks at most this many of the newest batches for its lines."""
DOWNLOAD_BATCHES = 20
"""Batches read per query while a download streams (each decompressed one at a time)."""


def _rank(level: str) -> int:
    name = _ALIASES.get(level.upper(), level.upper())
    return LEVELS.index(name) if name in LEVELS else LEVELS.index("INFO")


def level_filter(level: str) -> str:
    """The level a request asks for, if it is one (else no filter)."""
    return level if level in LEVELS else ""


def _lines(data_gz: bytes, source: str, level: str) -> list[dict[str, Any]]:
    least = _rank(level) if level else 0
    out = []
    for raw in gzip.decompress(data_gz).splitlines():
        line = json.loads(raw)
        if _rank(str(line.get("level", ""))) >= least:
            out.append({**line, "source": source, "msg": strip_runtime_prefix(line["msg"])})
    return out


def _newest(rows: Any, limit: int, level: str) -> list[dict[str, Any]]:
    """The newest ``limit`` lines of batches given newest first; returned by time."""
    lines: list[dict[str, Any]] = []
    for source, data_gz, serial in rows:
        batch = [{**x, "node": serial} for x in _lines(data_gz, source, level)]
        lines[:0] = batch[-(limit - len(lines)) :]
        if len(lines) >= limit:
            break
    return sorted(lines, key=lambda x: float(x.get("ts") or 0))  # stable: same time keeps order


def node_where(node: Node, source: str = "") -> ColumnElement[bool]:
    where = LogBatch.node_id == node.id
    return where & (LogBatch.source == source) if source else where


def app_where(app: App) -> ColumnElement[bool]:
    """The app's console lines from the nodes it is assigned to."""
    on = select(Assignment.node_id).where(Assignment.app_id == app.id)
    return (LogBatch.source == f"app:{app.uuid}") & LogBatch.node_id.in_(on)


def _batches(where: ColumnElement[bool]) -> Any:
    return (
        select(LogBatch.source, LogBatch.data_gz, Node.serial)
        .join(Node, Node.id == LogBatch.node_id)
        .where(where)
    )


def recent_logs(
    s: Session, node: Node, source: str = "", level: str = "", limit: int = 200
) -> list[dict[str, Any]]:
    """A node's newest ``limit`` lines, oldest first (as ``GET /nodes/<key>/logs``)."""
    stmt = _batches(node_where(node, source)).order_by(LogBatch.id.desc()).limit(SCAN_BATCHES)
    return _newest(s.execute(stmt), limit, level)


def app_logs(s: Session, app: App, limit: int = 200) -> list[dict[str, Any]]:
    """An app's newest ``limit`` console lines from its nodes, oldest first."""
    stmt = _batches(app_where(app)).order_by(LogBatch.id.desc()).limit(SCAN_BATCHES)
    return _newest(s.execute(stmt), limit, "")


def _text(line: dict[str, Any], label: str) -> str:
    try:
        when = dt.datetime.fromtimestamp(float(line.get("ts") or 0), dt.UTC)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except (TypeError, ValueError, OverflowError):
        stamp = "-"
    return f"{stamp} {line.get('level', '')!s:<5} {label}{line['msg']}\n"


def log_text(
    db: Database,
    where: ColumnElement[bool],
    level: str = "",
    labels: Mapping[str, str] | None = None,
    by_node: bool = False,
) -> Iterator[str]:
    """Every stored line matching ``where`` as text, oldest first, each after its source's
    label (``labels``: source → name; the node's serial when ``by_node``):
    ``DOWNLOAD_BATCHES`` per query (a short transaction each), one batch decompressed at
    a time."""
    labels = labels or {}
    after = 0
    while True:
        with db.transaction() as s:
            rows = s.execute(
                _batches(where & (LogBatch.id > after))
                .add_columns(LogBatch.id)
                .order_by(LogBatch.id)
                .limit(DOWNLOAD_BATCHES)
            ).all()
        if not rows:
            return
        for source, data_gz, serial, _ in rows:
            name = serial if by_node else labels.get(source, source)
            label = "" if source == "agent" and not by_node else f"[{name}] "
            yield "".join(_text(x, label) for x in _lines(data_gz, source, level))
        after = rows[-1][3]
