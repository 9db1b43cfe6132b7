"""Tables of the git source: the followed repository, the objects it owns, and which
revision produced each node's config generation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models.core import Base, utcnow

__all__ = ["GitObject", "GitSource", "NodeRevision"]


class GitSource(Base):
    """The repository the controller follows (at most one row, id 1)."""

    __tablename__ = "git_sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    """A local path or a URL the ``git`` command can fetch, without credentials (shown)."""
    credentials: Mapped[str] = mapped_column(Text, default="")
    """The ``user[:password]`` part of the URL, kept apart: never shown nor audited."""
    verify_signatures: Mapped[bool] = mapped_column(Boolean, default=False)
    """Refuse a revision whose commit is not signed by a key of ``allowed_signers``."""
    allowed_signers: Mapped[str] = mapped_column(Text, default="")
    """An ssh allowed-signers file (``git config gpg.ssh.allowedSignersFile``)."""
    branch: Mapped[str] = mapped_column(String(255), default="main")
    path: Mapped[str] = mapped_column(String(255), default="")
    """Sub-folder of the repository holding ``sites/``."""
    interval_s: Mapped[int] = mapped_column(Integer, default=60)
    """Seconds between periodic syncs (0: only on demand)."""
    revision: Mapped[str] = mapped_column(String(40), default="")
    """The last good revision: the one in force."""
    synced_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    attempted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    error_revision: Mapped[str] = mapped_column(String(40), default="")
    errors: Mapped[list[Any]] = mapped_column(default=list)
    """The last refused sync's errors: [{file, line, reason}] (empty after a good sync)."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class GitObject(Base):
    """An object the git source defines: read-only for the API and the UI."""

    __tablename__ = "git_objects"
    __table_args__ = (UniqueConstraint("kind", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # App | Network | Node
    name: Mapped[str] = mapped_column(String(128))
    site: Mapped[str] = mapped_column(String(63))
    file: Mapped[str] = mapped_column(String(512))
    revision: Mapped[str] = mapped_column(String(40))


class NodeRevision(Base):
    """The git revision in force when a node's config generation was produced."""

    __tablename__ = "node_revisions"
    node_id: Mapped[int] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[str] = mapped_column(String(40))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
