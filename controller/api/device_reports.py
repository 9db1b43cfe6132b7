"""Device API reports beyond `info`: ``metrics`` (lossy) and ``logs`` (batched, gzip).

Both are signed like every device call.  A log batch is refused whole when it is
not valid gzip, decompresses past the cap (no gzip bombs), has too many lines or
a line that does not match the schema; each node keeps its newest batches only.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import zlib

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from sqlalchemy import delete, func, select

from controller.api.device import open_lossy_report, open_node_request
from controller.errors import ApiError, validation_details
from controller.store.models import LogBatch
from controller.web.context import current_services
from protocol.bounded_json import load_json
from protocol.messages import (
    MAX_LOG_BATCH_LINES,
    LogBatchMessage,
    LogLine,
    MetricsMessage,
)

__all__ = ["device_reports"]

device_reports = Blueprint("device_reports", __name__, url_prefix="/api/v1/device")
MAX_LOG_BYTES = 8 * 1024 * 1024
KEEP_BATCHES_PER_NODE = 500


def _trim(session, model, node_id: int, keep: int) -> None:  # type: ignore[no-untyped-def]
    """Delete a node's oldest rows of ``model`` beyond ``keep``."""
    count = (
        session.scalar(select(func.count()).select_from(model).where(model.node_id == node_id)) or 0
    )
    if count > keep:
        oldest = session.scalars(
            select(model.id).where(model.node_id == node_id).order_by(model.id).limit(count - keep)
        ).all()
        session.execute(delete(model).where(model.id.in_(oldest)))


@device_reports.post("/metrics")
def metrics() -> ResponseReturnValue:
    """Metrics are lossy: held in memory and written in batches (store.write_behind); a
    replayed sample is caught in memory like an idle config poll."""
    svc = current_services()
    with svc.db.transaction() as session:
        node_id, msg = open_lossy_report(session, MetricsMessage)
    svc.writes.metrics(node_id, msg.model_dump(mode="json"))
    return jsonify({"ok": True})


def _decode_lines(msg: LogBatchMessage) -> list[LogLine]:
    try:
        raw = base64.b64decode(msg.lines_gz_b64, validate=True)
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
            data = gz.read(MAX_LOG_BYTES + 1)
    except (binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise ApiError(422, "bad_request", f"lines_gz_b64 is not base64 gzip: {exc}") from exc
    if len(data) > MAX_LOG_BYTES:
        raise ApiError(413, "too_large", f"log batch decompresses past {MAX_LOG_BYTES} bytes")
    rows = data.splitlines()
    if len(rows) > MAX_LOG_BATCH_LINES:
        raise ApiError(413, "too_large", f"more than {MAX_LOG_BATCH_LINES} lines in a batch")
    try:
        return [LogLine.model_validate(load_json(r, max_depth=4)) for r in rows if r.strip()]
    except ValueError as exc:
        details = validation_details(exc) if isinstance(exc, ValidationError) else None
        raise ApiError(422, "invalid_body", f"a log line is invalid: {exc}", details) from exc


@device_reports.post("/logs")
def logs() -> ResponseReturnValue:
    with current_services().db.transaction() as session:
        node, msg = open_node_request(session, LogBatchMessage)
        lines = _decode_lines(msg)
        if msg.seq <= int((node.log_seq or {}).get(msg.source, -1)):
            return jsonify({"ok": True, "duplicate": True})
        payload = "\n".join(line.model_dump_json() for line in lines).encode()
        session.add(
            LogBatch(
                node_id=node.id,
                source=msg.source,
                lines=len(lines),
                data_gz=gzip.compress(payload, mtime=0),
            )
        )
        node.log_seq = {**(node.log_seq or {}), msg.source: msg.seq}
        session.flush()
        _trim(session, LogBatch, node.id, KEEP_BATCHES_PER_NODE)
    return jsonify({"ok": True, "lines": len(lines)})
