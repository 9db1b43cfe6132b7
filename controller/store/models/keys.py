"""Tables of the controller's own keys: the onboarding batches it issued (each with its
onboarding certificate, revocable) and the config-signing certificates it rotated out
(offered to nodes during a grace period, their keys deleted after it)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models.core import Base, utcnow

__all__ = ["OnboardingBatch", "RetiredSigningCert"]


class OnboardingBatch(Base):
    """An onboarding bundle issued for a batch of nodes: its certificate registers nodes
    until the batch is revoked."""

    __tablename__ = "onboarding_batches"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    cert_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    not_after: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    """Who issued it (``seen`` when first met at a register: issued before batches were
    recorded)."""
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_reason: Mapped[str] = mapped_column(Text, default="")


class RetiredSigningCert(Base):
    """A config-signing certificate replaced by ``rotate-signing``."""

    __tablename__ = "retired_signing_certs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    cert_pem: Mapped[str] = mapped_column(Text)
    rotated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    retire_at: Mapped[dt.datetime] = mapped_column(DateTime)
    """Until then ``certs`` still offers it (nodes holding configs it signed move over);
    after it, the key file is deleted and nodes drop the cert."""
    key_deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
