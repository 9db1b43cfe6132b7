"""The controller's periodic jobs (git sync, the rollout engine's tick, deleting
rotated-out signing keys after their grace period), run exactly once across every
process and replica.

Each job is a daemon thread that calls it every second, but only while this process is
the leader: on PostgreSQL the holder of a session-level advisory lock on a connection of
its own (if the process dies or its connection is cut, PostgreSQL releases the lock and
another process takes over within a second; a leader that loses its connection stops
acting at its next check); on SQLite the one process there is.  A failed turn is logged
and the next one tries again (the database away for a moment).  The jobs themselves take
row locks too (a rollout ``FOR UPDATE SKIP LOCKED``, the git source row), so even two
leaders for a moment could not act twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from controller.domain import events
from controller.gitops.worker import sync_if_due
from controller.rollouts.engine import tick
from controller.services import Services
from controller.store.housekeeping import prune
from controller.trust.signing import retire_due_keys

__all__ = ["JOBS", "Job", "Leadership", "replica_id", "run_jobs", "start_jobs"]

log = logging.getLogger(__name__)
LEADER_LOCK = 0x0757_0001
"""The advisory lock id whose holder runs the jobs ("outpost" jobs leader)."""
CHECK_S = 1.0
LEADER_APP_PREFIX = "outpost-leader "
REPLICA_ENV = "OUTPOST_REPLICA_ID"


def replica_id() -> str:
    """Who this replica is (``outpost-controller serve`` sets it for all its workers)."""
    return os.environ.get(REPLICA_ENV) or f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[Services], object]
    every_s: float = 1.0


PRESENCE_MAX_BATCHES = 400
"""Batches per turn (200,000 nodes); what is left waits for the next turn."""


def judge_presence(services: Services) -> None:
    """Nodes that went offline or came back: an event each, a batch per transaction."""
    for _ in range(PRESENCE_MAX_BATCHES):
        with services.db.transaction() as s:
            judged = events.presence(s, services.settings.node_config_interval_s)
        if judged < events.PRESENCE_BATCH:
            return


JOBS = (
    Job("git-sync", sync_if_due),
    Job("rollouts", tick),
    Job("prune", lambda services: prune(services.db), every_s=60.0),
    Job("retire-signing-keys", retire_due_keys, every_s=30.0),
    Job("presence", judge_presence, every_s=15.0),
)


class Leadership:
    """Whether this process runs the jobs now (see the module docstring)."""

    def __init__(self, db_url: str, replica: str | None = None) -> None:
        self.replica = replica or replica_id()
        """This replica: the host and the serving process group (workers share it)."""
        self._pg_url = (
            db_url.replace("postgresql+psycopg://", "postgresql://")
            if db_url.startswith("postgresql")
            else ""
        )
        self._conn: Any = None
        self._held = not self._pg_url  # SQLite: the only process
        self._checked = 0.0
        self._lock = threading.Lock()

    def held(self) -> bool:
        """True while this process holds the lead (checked against the database ≤ 1/s)."""
        if not self._pg_url:
            return True
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= CHECK_S:
                self._checked = now
                self._held = self._check()
            return self._held

    def _check(self) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self._pg_url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name=f"{LEADER_APP_PREFIX}{self.replica}"[:63],
                )
                self._held = False
            if self._held:
                self._conn.execute("SELECT 1")  # still connected: the lock is still ours
                return True
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
            if row and row[0]:
                log.info("this process now runs the background jobs")
                return True
            return False
        except psycopg.Error as exc:
            if self._held:
                log.warning("lost the background-jobs lead (%s)", exc)
            self.close()
            return False

    def replica_leads(self, session: Session) -> bool:
        """True when a process of this replica (this one or a sibling worker) leads."""
        if not self._pg_url:
            return True
        holder = session.scalar(
            text(
                "SELECT a.application_name FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.classid = 0 AND l.objid = :key"
            ),
            {"key": LEADER_LOCK},
        )
        return bool(holder == f"{LEADER_APP_PREFIX}{self.replica}"[:63])

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken
                self._conn.close()
        self._conn = None
        self._held = False


def _loop(job: Job, services: Services, lead: Leadership, stop: threading.Event) -> None:
    while not stop.wait(job.every_s):
        try:
            if lead.held():
                job.run(services)
        except Exception:
            log.exception("background job %s failed; the next turn tries again", job.name)


def run_jobs(services: Services, stop: threading.Event) -> None:
    """``outpost-controller worker``: only the periodic jobs, until ``stop``."""
    lead = start_jobs(services, stop)
    stop.wait()
    lead.close()


def start_jobs(services: Services, stop: threading.Event) -> Leadership:
    """Start every job's thread; they act only while the returned leadership is held."""
    lead = Leadership(services.settings.database_url)
    for job in JOBS:
        threading.Thread(
            target=_loop, args=(job, services, lead, stop), name=job.name, daemon=True
        ).start()
    return lead
