"""When each node was last heard from, written in batches instead of once per request.

    seen.touch(node_id)         in memory (a dict write)
    seen.flush(db)              one UPDATE per batch, every ``every_s`` from a thread

A node's ``last_seen`` in the database lags its last request by at most ``every_s``
(offline is minutes); a graceful stop flushes what is left.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy import Table, bindparam, update

from controller.store.database import Database
from controller.store.models import Node

__all__ = ["LastSeen"]

log = logging.getLogger(__name__)


class LastSeen:
    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._pending: dict[int, dt.datetime] = {}
        self._lock = threading.Lock()

    def touch(self, node_id: int) -> None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with self._lock:
            self._pending[node_id] = now

    def flush(self, db: Database) -> int:
        """Write what was touched since the last flush; returns how many nodes."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        rows = [{"nid": node_id, "seen": at} for node_id, at in batch.items()]
        try:
            with db.transaction() as s:
                table = Node.__table__
                assert isinstance(table, Table)
                s.connection().execute(
                    update(table)
                    .where(table.c.id == bindparam("nid"))
                    .values(last_seen=bindparam("seen")),
                    rows,
                )
        except Exception:
            with self._lock:  # keep them for the next turn (newer touches win)
                self._pending = {**batch, **self._pending}
            raise
        return len(rows)

    def run(self, db: Database, stop: threading.Event) -> None:
        """Flush every ``every_s`` until ``stop``, then once more."""
        while not stop.wait(self.every_s):
            try:
                self.flush(db)
            except Exception:
                log.exception("writing last-seen times failed; retrying")
        self.flush(db)
