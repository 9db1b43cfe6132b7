"""Wake long-polling config requests when a node's desired state may have changed.

    changed(session, node_id | ALL)  inside the transaction that made the change
    wait(node_id, since, timeout)    in the config handler, outside any transaction

The wake-up is sent only when that transaction commits: on PostgreSQL through
``pg_notify`` (transactional; every replica LISTENs and wakes its own waiters), on
SQLite through an after-commit hook in this process.  A wake-up only says "look
again": the handler recomputes the config, so spurious wake-ups cost one query.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import event, text
from sqlalchemy.orm import Session

__all__ = ["ALL", "NOTIFIER_KEY", "ConfigNotifier", "WaitersFull", "changed"]

log = logging.getLogger(__name__)
ALL = 0  # node ids start at 1
CHANNEL = "outpost_config"
_PENDING = "outpost_notify_pending"
NOTIFIER_KEY = "outpost_notifier"
"""Where :class:`controller.store.database.Database` puts its notifier in ``session.info``."""


def changed(session: Session, node_id: int = ALL) -> None:
    """Wake the long-polls of ``node_id`` (ALL: every node) once this transaction commits.

    A session without a notifier (a tool's own database session) wakes nobody."""
    notifier: ConfigNotifier | None = session.info.get(NOTIFIER_KEY)
    if notifier is not None:
        notifier.notify(session, node_id)


class WaitersFull(Exception):
    """This process already holds its maximum of parked long-polls."""


class ConfigNotifier:
    """Parked long-polls and their wake-ups in this process.  Each parked poll waits on an
    event of its own, filed under its node: a change to one node wakes that node's polls
    only (one condition shared by all woke every parked poll to look and sleep again:
    10,000 switches per change with 10,000 parked); ``ALL`` wakes every one."""

    def __init__(self, db_url: str = "", max_waiters: int = 25_000) -> None:
        self._lock = threading.Lock()
        self._version: dict[int, int] = {}
        self._parked: dict[int, set[threading.Event]] = {}
        self.max_waiters = max_waiters
        self.waiters = 0
        """Long-polls parked in :meth:`wait` right now (this process)."""
        self._released = False
        self._pg_url = db_url if db_url.startswith("postgresql") else ""
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        if self._pg_url:
            self._listener = threading.Thread(target=self._listen, name="pg-listen", daemon=True)
            self._listener.start()

    # -- producer side -----------------------------------------------------------
    def notify(self, session: Session, node_id: int = ALL) -> None:
        """Wake waiters for ``node_id`` (ALL: every node) once this transaction commits."""
        if self._pg_url:
            session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": str(node_id)})
            return
        pending: set[int] = session.info.setdefault(_PENDING, set())
        if not pending:
            event.listen(session, "after_commit", self._after_commit, once=True)
            event.listen(session, "after_rollback", self._after_rollback, once=True)
        pending.add(node_id)

    def _after_commit(self, session: Session) -> None:
        for node_id in session.info.pop(_PENDING, set()):
            self.wake(node_id)

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop(_PENDING, None)

    def wake(self, node_id: int) -> None:
        with self._lock:
            self._version[node_id] = self._version.get(node_id, 0) + 1
            if node_id == ALL:
                self._wake_every_poll()
            else:
                for parked in self._parked.get(node_id, ()):
                    parked.set()

    def _wake_every_poll(self) -> None:
        """Set every parked poll's event (the caller holds the lock)."""
        for events in self._parked.values():
            for parked in events:
                parked.set()

    # -- consumer side -----------------------------------------------------------
    def version(self, node_id: int) -> int:
        """A token to pass to :meth:`wait`; take it BEFORE reading the config."""
        with self._lock:
            return self._changes(node_id)

    def _changes(self, node_id: int) -> int:
        return self._version.get(node_id, 0) + self._version.get(ALL, 0)

    def wait(self, node_id: int, since: int, timeout: float) -> bool:
        """Block until a wake-up for the node (or ALL) after ``since``; False on timeout
        or once the process is stopping.  Raises :class:`WaitersFull` at the cap."""
        deadline = time.monotonic() + timeout
        parked = threading.Event()
        with self._lock:
            if self._changes(node_id) != since:
                return True
            if self._released:
                return False
            if self.waiters >= self.max_waiters:
                raise WaitersFull(f"{self.waiters} long-polls are parked here already")
            self.waiters += 1
            self._parked.setdefault(node_id, set()).add(parked)
        try:
            while (left := deadline - time.monotonic()) > 0:
                parked.wait(left)
                with self._lock:
                    if self._changes(node_id) != since:
                        return True
                    if self._released:
                        return False
                    parked.clear()
            return False
        finally:
            with self._lock:
                self.waiters -= 1
                events = self._parked.get(node_id)
                if events is not None:
                    events.discard(parked)
                    if not events:
                        del self._parked[node_id]

    def release_waiters(self) -> None:
        """The process is stopping: every parked long-poll (and any later one) returns now."""
        with self._lock:
            self._released = True
            self._wake_every_poll()

    # -- PostgreSQL LISTEN -------------------------------------------------------
    def _listen(self) -> None:
        import psycopg

        url = self._pg_url.replace("postgresql+psycopg://", "postgresql://")
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.wake(ALL)  # anything may have changed while not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.wake(int(note.payload or ALL))
            except Exception as exc:
                log.warning("config LISTEN connection lost (%s); retrying", exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self.release_waiters()
