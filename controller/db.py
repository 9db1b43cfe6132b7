"""Storage: SQLAlchemy 2 models and the engine/session factory.

SQLite (a file in the data dir) by default; any SQLAlchemy URL (PostgreSQL) by
setting.  Everything the controller knows lives here; processes hold no state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

__all__ = [
    "ApiToken",
    "App",
    "Assignment",
    "AuditEvent",
    "Base",
    "Database",
    "Image",
    "Node",
    "SeenRequest",
    "utcnow",
]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Node(Base):
    """A node: claimed by serial, then registered with its device cert."""

    __tablename__ = "nodes"
    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(128), unique=True)
    uuid: Mapped[str | None] = mapped_column(String(36), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="claimed")  # claimed|registered
    device_cert_pem: Mapped[str | None] = mapped_column(Text)
    device_cert_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    onboarding_cert_sha256: Mapped[str | None] = mapped_column(String(64))
    inventory: Mapped[dict[str, Any]] = mapped_column(default=dict)
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    registered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_seen: Mapped[dt.datetime | None] = mapped_column(DateTime)
    config_generation: Mapped[int] = mapped_column(Integer, default=0)
    config_content_hash: Mapped[str] = mapped_column(String(64), default="")
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    info_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Image(Base):
    """An image in the controller's datastore, addressed by sha256."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class App(Base):
    """An app definition; ``spec`` holds the validated protocol fields except uuid/image."""

    __tablename__ = "apps"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("node_id", "app_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))


class SeenRequest(Base):
    """Request ids of signed device requests, kept until they could no longer be fresh."""

    __tablename__ = "seen_requests"
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class ApiToken(Base):
    """Operator API tokens; only the sha256 of the secret is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin|operator|viewer
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Database:
    """Engine + session factory for one database URL."""

    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        with self._sessions() as session, session.begin():
            yield session


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
