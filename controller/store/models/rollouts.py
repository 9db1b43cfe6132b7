"""Tables of staged rollouts: the rollout, each node's progress and the version pins, and
the site policies (download caps and windows, switch-over windows, a nearer datastore)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models.core import Base, utcnow

__all__ = ["ACTIVE", "AppPin", "Rollout", "RolloutNode", "SitePolicy"]

ACTIVE = ("progressing", "awaiting_approval", "paused")
"""States of a rollout that still holds its app."""


class Rollout(Base):
    """One app version change moving through ordered rings."""

    __tablename__ = "rollouts"
    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(24), default="progressing")
    """progressing | awaiting_approval | paused | succeeded | rolled_back"""
    rings: Mapped[list[Any]] = mapped_column(default=list)
    """The ring definitions (``plan.Ring`` as JSON), in order."""
    ring: Mapped[int] = mapped_column(Integer, default=0)
    """Index of the current ring."""
    ring_phase: Mapped[str] = mapped_column(String(16), default="pending")
    """pending | deploying | passed (of the current ring)."""
    ring_started_at: Mapped[float | None] = mapped_column(Float)
    batch: Mapped[int] = mapped_column(Integer, default=0)
    """Index of the current batch within the current ring."""
    budgets: Mapped[list[Any]] = mapped_column(default=list)
    """Disruption budgets (``plan.BudgetBody`` as JSON)."""
    approved_rings: Mapped[list[Any]] = mapped_column(default=list)
    from_version: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """{image: name, image_id, spec} before the rollout."""
    to_version: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str] = mapped_column(String(1024), default="")
    history: Mapped[list[Any]] = mapped_column(default=list)
    """[{at, ring, what}] — what happened, in order."""
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RolloutNode(Base):
    """A node of a ring: when it got the new version and how it has been doing since."""

    __tablename__ = "rollout_nodes"
    __table_args__ = (UniqueConstraint("rollout_id", "node_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    ring: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str] = mapped_column(String(16), default="queued")
    """queued (pre-fetching, waiting its turn) | switched | healthy | failed"""
    switched_at: Mapped[float | None] = mapped_column(Float)
    waiting: Mapped[str] = mapped_column(String(256), default="")
    """Why a queued node is not switched yet (window, budget, download, batch)."""
    generation: Mapped[int] = mapped_column(Integer, default=0)
    """The node's config generation carrying the new version."""
    state: Mapped[str] = mapped_column(String(16), default="")
    """The app's last seen state on the node (once it runs that generation)."""
    running_since: Mapped[float | None] = mapped_column(Float)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(String(1024), default="")


class AppPin(Base):
    """A node runs this version of the app instead of the app's definition."""

    __tablename__ = "app_pins"
    __table_args__ = (UniqueConstraint("node_id", "app_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))


class SitePolicy(Base):
    """How the nodes a selector picks download and switch over (``domain.site_policies``)."""

    __tablename__ = "site_policies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The validated body (selector, group_by, caps, windows, datastore URL)."""
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
