"""Session recordings in asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/).

The header is one JSON object; every event a JSON array ``[seconds, code, data]``: ``"o"``
what the node's terminal printed (UTF-8, split multi-byte characters joined again),
``"r"`` a resize (``"COLSxROWS"``), ``"m"`` a marker (the end and its reason).  Keystrokes
are not recorded (a typed password that the terminal does not echo stays out); what the
terminal showed is.

:class:`Recorder` buffers events and :meth:`Recorder.flush` writes them as the next
chunk, in its own transaction; the relay flushes before it sends the operator what the
chunk holds, so what anyone saw is in the recording even if the process dies a moment
later.
"""

from __future__ import annotations

import codecs
import json
import time
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from controller.errors import ApiError
from controller.store.database import Database
from controller.store.models import RemoteRecordingChunk, RemoteSession, utcnow

__all__ = ["Recorder", "RecordingFull", "cast_file", "export", "header"]


class RecordingFull(Exception):
    """The session reached the policy's recording size."""


def header(cols: int, rows: int, started: float, title: str) -> str:
    return json.dumps(
        {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(started),
            "title": title,
            "env": {"TERM": "xterm-256color"},
        }
    )


class Recorder:
    def __init__(self, db: Database, session_pk: int, max_bytes: int, started: float) -> None:
        self.db = db
        self.session_pk = session_pk
        self.max_bytes = max_bytes
        self.started = started
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lines: list[str] = []
        self._seq = 0
        self.written = 0
        """Bytes of event lines stored so far."""

    def _event(self, code: str, data: str) -> None:
        line = json.dumps([round(time.time() - self.started, 6), code, data]) + "\n"
        self._lines.append(line)

    def output(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._event("o", text)

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def marker(self, text: str) -> None:
        self._event("m", text)

    @property
    def pending(self) -> bool:
        return bool(self._lines)

    def flush(self) -> None:
        """Store the buffered events as the next chunk (and the relay's heartbeat).
        Raises RecordingFull once the stored size would pass the limit."""
        if not self._lines:
            return
        data = "".join(self._lines)
        size = len(data.encode())
        if self.written + size > self.max_bytes:
            self._lines.clear()
            raise RecordingFull(f"the recording reached its limit of {self.max_bytes} bytes")
        with self.db.transaction() as s:
            s.add(RemoteRecordingChunk(session_id=self.session_pk, seq=self._seq, data=data))
            s.execute(
                update(RemoteSession)
                .where(RemoteSession.id == self.session_pk)
                .values(recording_bytes=self.written + size, relay_seen_at=utcnow())
            )
        self._seq += 1
        self.written += size
        self._lines.clear()


def export(session: Session, row: RemoteSession) -> str:
    """The whole recording as an asciicast v2 file (header, then every event in order)."""
    chunks = session.scalars(
        select(RemoteRecordingChunk.data)
        .where(RemoteRecordingChunk.session_id == row.id)
        .order_by(RemoteRecordingChunk.seq)
    )
    return (row.recording_header or "{}") + "\n" + "".join(chunks)


def cast_file(session: Session, row: RemoteSession) -> str:
    """The recording to download; 404 for a port-forward (metadata only)."""
    if not row.recorded:
        raise ApiError(404, "not_recorded", "port-forwards record metadata only")
    return export(session, row)


def chunk_count(session: Session, row: RemoteSession) -> int:
    found: Any = session.scalar(
        select(func.count()).where(RemoteRecordingChunk.session_id == row.id)
    )
    return int(found or 0)
