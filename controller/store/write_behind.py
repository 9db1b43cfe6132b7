"""Writes that may lag a few seconds, done in batches instead of once per request:
when each node was last heard from, and the metrics nodes report.

    writes.touch(node_id)                  the node was heard from now
    writes.metrics(node_id, sample)        its newest metrics (and a history sample)
    writes.flush(db)                       one transaction per batch, every ``every_s``

At 100,000 nodes these are thousands of rows a second; batched, they cost a few
statements every few seconds.  What the database shows lags by at most ``every_s``
(offline is minutes; metrics are lossy by design); a graceful stop flushes what is left,
a crash loses at most one batch (last-seen times are refreshed by the next poll, lost
metric samples are not resent, as before).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from sqlalchemy import Table, bindparam, insert, update

from controller.store.database import Database
from controller.store.models import MetricSample, Node

__all__ = ["WriteBehind"]

log = logging.getLogger(__name__)
MAX_PENDING_SAMPLES = 200_000
"""Samples held while the database is away; older ones are dropped past this."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class WriteBehind:
    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._seen: dict[int, dt.datetime] = {}
        self._latest: dict[int, tuple[dict[str, Any], dt.datetime]] = {}
        self._samples: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def touch(self, node_id: int) -> None:
        now = _now()
        with self._lock:
            self._seen[node_id] = now

    def metrics(self, node_id: int, data: dict[str, Any]) -> None:
        now = _now()
        with self._lock:
            self._latest[node_id] = (data, now)
            self._samples.append({"node_id": node_id, "at": now, "data": data})
            if len(self._samples) > MAX_PENDING_SAMPLES:
                del self._samples[: len(self._samples) - MAX_PENDING_SAMPLES]

    def flush(self, db: Database) -> int:
        """Write everything held; returns how many rows.  On failure it is kept."""
        with self._lock:
            seen, latest, samples = self._seen, self._latest, self._samples
            self._seen, self._latest, self._samples = {}, {}, []
        if not (seen or latest or samples):
            return 0
        nodes = Node.__table__
        assert isinstance(nodes, Table)
        try:
            with db.transaction() as s:
                conn = s.connection()
                if seen:
                    conn.execute(
                        update(nodes)
                        .where(nodes.c.id == bindparam("nid"))
                        .values(last_seen=bindparam("seen")),
                        [{"nid": n, "seen": at} for n, at in sorted(seen.items())],
                    )
                if latest:
                    conn.execute(
                        update(nodes)
                        .where(nodes.c.id == bindparam("nid"))
                        .values(metrics=bindparam("data"), metrics_at=bindparam("at")),
                        [{"nid": n, "data": d, "at": at} for n, (d, at) in sorted(latest.items())],
                    )
                if samples:
                    conn.execute(insert(MetricSample), samples)
        except Exception:
            with self._lock:  # keep them for the next turn (newer values win)
                self._seen = {**seen, **self._seen}
                self._latest = {**latest, **self._latest}
                self._samples = samples + self._samples
            raise
        return len(seen) + len(latest) + len(samples)

    def start(self, db: Database) -> None:
        """Flush to ``db`` every ``every_s`` in a thread of its own, until ``stop``."""
        self._thread = threading.Thread(
            target=self._run, args=(db,), name="write-behind", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """End the thread after one last flush (what it holds is written, not lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, db: Database) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.flush(db)
            except Exception:
                log.exception("write-behind flush failed; retrying")
        try:
            self.flush(db)
        except Exception:
            log.exception("could not write the last-seen times and metrics at stop")
