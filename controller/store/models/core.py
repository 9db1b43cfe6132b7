"""Storage: SQLAlchemy 2 models and the engine/session factory.

SQLite (a file in the data dir) by default; any SQLAlchemy URL (PostgreSQL) by
setting.  Everything the controller knows lives here; processes hold no state.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiToken",
    "App",
    "Assignment",
    "AuditEvent",
    "Base",
    "Event",
    "Image",
    "LogBatch",
    "MetricSample",
    "Network",
    "Node",
    "PendingRegistration",
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
    pinned_device_cert_sha256: Mapped[str | None] = mapped_column(String(64))
    """The device cert the claim (or the approval of a pending node) pinned: only it
    registers.  None: the claim pinned none (first registration wins, when allowed)."""
    pinned_ek_sha256: Mapped[str | None] = mapped_column(String(64))
    """The TPM's EK certificate the claim pinned (None: any EK certificate from the bundle)."""
    inventory: Mapped[dict[str, Any]] = mapped_column(default=dict)
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    registered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_seen: Mapped[dt.datetime | None] = mapped_column(DateTime)
    config_generation: Mapped[int] = mapped_column(Integer, default=0)
    config_content_hash: Mapped[str] = mapped_column(String(64), default="")
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    info_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    device_labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Labels the node reports about itself (kept apart; selectors say ``device/<key>``)."""
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Overrides of protocol NodeSettings (validated when set)."""
    presence: Mapped[str] = mapped_column(String(8), default="")
    """online | offline | "" (never judged): what the last presence event said."""
    reboot_counter: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    log_seq: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Highest log batch sequence number stored, per source (drops resent batches)."""


class Image(Base):
    """An image in the controller's datastore, addressed by sha256."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(32))
    url: Mapped[str | None] = mapped_column(String(2048))
    """External datastore URL; None means the controller's own datastore."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Network(Base):
    """An app network; a node gets the networks its apps attach to."""

    __tablename__ = "networks"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    subnet: Mapped[str] = mapped_column(String(43))
    nat: Mapped[bool] = mapped_column(default=False)


class App(Base):
    """An app definition; ``spec`` holds the validated protocol fields except uuid/image."""

    __tablename__ = "apps"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    label_selector: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """Run on every node whose labels include all of these (None: explicit assignments only)."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Assignment(Base):
    """An app instance on a node, explicit or through a label selector.

    The restart/purge counters live here (they are per instance) and survive the
    instance being re-derived from labels.
    """

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("node_id", "app_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    explicit: Mapped[bool] = mapped_column(default=True)
    restart_counter: Mapped[int] = mapped_column(Integer, default=0)
    purge_counter: Mapped[int] = mapped_column(Integer, default=0)


class PendingRegistration(Base):
    """A node with a valid onboarding cert whose serial was not claimed (awaits approval)."""

    __tablename__ = "pending_registrations"
    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(128), unique=True)
    device_cert_sha256: Mapped[str] = mapped_column(String(64))
    """The identity of the first attempt: an approval pins exactly it."""
    ek_sha256: Mapped[str | None] = mapped_column(String(64))
    """The EK certificate of the first attempt (None: it sent none)."""
    onboarding_cert_sha256: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64), default="", index=True)
    """The client address the first attempt came from."""
    conflicts: Mapped[int] = mapped_column(Integer, default=0)
    """Later attempts for this serial with another identity (refused, not recorded here)."""
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class Event(Base):
    """Things that happened to nodes and apps (registered, state changes, commands)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(64), index=True)
    message: Mapped[str] = mapped_column(String(1024), default="")
    app_uuid: Mapped[str | None] = mapped_column(String(36), index=True)
    """The app instance the event is about (None: the node itself)."""


class MetricSample(Base):
    """A metrics message as received (bounded history per node, for plots)."""

    __tablename__ = "metric_samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class LogBatch(Base):
    """A batch of log lines from a node (agent or an app's console), gzip-compressed."""

    __tablename__ = "log_batches"
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(80))
    lines: Mapped[int] = mapped_column(Integer)
    data_gz: Mapped[bytes] = mapped_column(LargeBinary)


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
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
