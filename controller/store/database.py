"""The engine, sessions and schema of one database (SQLite file or PostgreSQL by URL).

    Database(url).transaction()  → a Session, committed on success, rolled back on error
    Database(url).create_schema() → Alembic upgrade to head, in process

A transaction's session carries the database's config notifier (``session.info``), so
domain code can wake long-polls with :func:`controller.store.notify.changed` without
holding any process-wide state.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError

from controller.errors import ApiError
from controller.store.notify import NOTIFIER_KEY, ConfigNotifier
from controller.store.slow import TransactionWatch

__all__ = ["Database", "alembic_config", "load_all_models"]

log = logging.getLogger(__name__)
SLOW_TRANSACTION_S = 5.0
"""A transaction held this long is logged with where it is (while it still runs), one
that waited this long for its turn (SQLite) when it ends: every other transaction of the
process waits behind it."""


class Database:
    """Engine + session factory for one database URL."""

    def __init__(self, url: str, notifier: ConfigNotifier | None = None) -> None:
        self.url = url
        self.notifier = notifier
        kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a cut connection is replaced
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._watch = TransactionWatch(SLOW_TRANSACTION_S)
        self._serial: threading.RLock | None = threading.RLock() if is_sqlite(url) else None
        """SQLite: one transaction at a time in this process.  SQLite has one writer, and
        its busy wait blocks in C: under gevent a transaction waiting for the write lock
        would stall the whole worker (up to the 30 s timeout) while the greenlet holding
        the lock cannot run to release it.  The lock (cooperative once gevent patched
        ``threading``) queues them instead; PostgreSQL needs none."""

    def create_schema(self) -> None:
        """Bring the schema to the newest migration (Alembic, in process)."""
        with self.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception.

        A uniqueness (or foreign-key) violation — two identical creates at the same moment,
        both past their "does it exist?" check — is the 409 it means, never a 500: the
        database's constraint is the lock, and the loser changed nothing.  So is a row that
        a concurrent request deleted under this one (an update that matched no row)."""
        asked = time.monotonic()
        token = None
        try:
            with (
                self._serial or contextlib.nullcontext(),
                self._sessions() as session,
                session.begin(),
            ):
                token = self._watch.enter()
                waited = time.monotonic() - asked
                if waited >= SLOW_TRANSACTION_S:
                    log.warning("a transaction waited %.1f s for its turn", waited)
                if self.notifier is not None:
                    session.info[NOTIFIER_KEY] = self.notifier
                yield session
        except IntegrityError as exc:
            raise ApiError(
                409, "conflict", "a concurrent change conflicts with this one; try again"
            ) from exc
        except (StaleDataError, ObjectDeletedError) as exc:
            raise ApiError(
                409, "conflict", "the object was changed or deleted meanwhile; try again"
            ) from exc
        finally:
            if token is not None:
                self._watch.leave(token)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def load_all_models() -> None:
    """Import every table module, so ``Base.metadata`` holds the whole schema."""
    import controller.store.models  # noqa: F401  (the package imports each table module)


def alembic_config(connection: Any = None) -> Config:
    """Alembic configuration for the packaged migrations, bound to ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
