"""Tables of remote access: grants, sessions, their recordings and the access policy.

A grant names who may open which kind of session on which node (and app) until when;
a session is one console, exec, shell or forwarded connection under a grant; a console,
exec or shell session's recording is stored as asciicast v2 lines in ordered chunks,
written before the operator is sent what they hold (so what anyone saw is recorded).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models.core import Base, utcnow

__all__ = ["RemoteGrant", "RemotePolicy", "RemoteRecordingChunk", "RemoteSession"]


class RemoteGrant(Base):
    __tablename__ = "remote_grants"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    app_uuid: Mapped[str | None] = mapped_column(String(36))
    app_name: Mapped[str] = mapped_column(String(63), default="")
    kind: Mapped[str] = mapped_column(String(16))  # console|exec|shell|forward
    forward_port: Mapped[int | None] = mapped_column(Integer)
    grantee: Mapped[str] = mapped_column(String(160), index=True)
    created_by: Mapped[str] = mapped_column(String(160))
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    needs_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_by: Mapped[str | None] = mapped_column(String(160))
    approved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(160))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class RemoteSession(Base):
    __tablename__ = "remote_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    grant_id: Mapped[int] = mapped_column(
        ForeignKey("remote_grants.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    app_name: Mapped[str] = mapped_column(String(63), default="")
    actor: Mapped[str] = mapped_column(String(160), index=True)
    command: Mapped[list[Any]] = mapped_column(JSON, default=list)
    tty: Mapped[bool] = mapped_column(Boolean, default=True)
    cols: Mapped[int] = mapped_column(Integer, default=80)
    rows: Mapped[int] = mapped_column(Integer, default=24)
    port: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    """pending (waiting for both sides) → active (relaying) → ended."""
    ticket_sha256: Mapped[str] = mapped_column(String(64), default="")
    """The operator's one-time attach ticket (emptied when used)."""
    rendezvous_key: Mapped[str] = mapped_column(String(64), default="")
    """Shared by the two halves of the relay (they may be in different processes)."""
    relay: Mapped[str] = mapped_column(String(200), default="")
    """host:pid of the process relaying the session."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    relay_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str] = mapped_column(String(500), default="")
    exit_code: Mapped[int | None] = mapped_column(Integer)
    bytes_to_node: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_from_node: Mapped[int] = mapped_column(BigInteger, default=0)
    recorded: Mapped[bool] = mapped_column(Boolean, default=False)
    recording_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    recording_header: Mapped[str] = mapped_column(Text, default="")
    """The asciicast v2 header line (JSON)."""


class RemoteRecordingChunk(Base):
    __tablename__ = "remote_recording_chunks"
    session_id: Mapped[int] = mapped_column(
        ForeignKey("remote_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    """asciicast v2 event lines, each ending in a newline."""


class RemotePolicy(Base):
    """The fleet's remote-access rules (one row; defaults when absent)."""

    __tablename__ = "remote_policy"
    id: Mapped[int] = mapped_column(primary_key=True)
    approval_sites: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Nodes whose ``site`` label is listed need a second person's approval per grant."""
    max_sessions_per_node: Mapped[int] = mapped_column(Integer, default=16)
    max_sessions_per_actor: Mapped[int] = mapped_column(Integer, default=8)
    idle_timeout_s: Mapped[int] = mapped_column(Integer, default=900)
    max_grant_s: Mapped[int] = mapped_column(Integer, default=8 * 3600)
    max_recording_bytes: Mapped[int] = mapped_column(BigInteger, default=64 * 1024 * 1024)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
