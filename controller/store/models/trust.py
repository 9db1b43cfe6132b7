"""Tables of attestation: per-node trust, nonces, integrity tokens, issued configs and the
fleet trust policy."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models.core import Base, utcnow

__all__ = ["AttestNonce", "IntegrityToken", "IssuedConfig", "NodeTrust", "TrustPolicy"]


class NodeTrust(Base):
    """What the controller knows about a node's TPM and its last attestation."""

    __tablename__ = "node_trust"
    node_id: Mapped[int] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16), default="unattested")
    """unattested | attested | failed"""
    result: Mapped[str] = mapped_column(String(32), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    tpm: Mapped[str] = mapped_column(String(16), default="")
    ak_public: Mapped[str | None] = mapped_column(Text)
    ak_name: Mapped[str | None] = mapped_column(String(80))
    ek_public: Mapped[str | None] = mapped_column(Text)
    """The certified EK's TPM2B_PUBLIC (base64), kept to make credential challenges."""
    ek_sha256: Mapped[str | None] = mapped_column(String(64))
    """sha256 of the EK certificate checked against the EK CA bundle at register."""
    ak_activated: Mapped[bool] = mapped_column(Boolean, default=False)
    """True once the node answered a credential challenge for this AK (the AK is proven
    to live in the TPM of that EK); until then no quote is trusted."""
    credential_sha256: Mapped[str | None] = mapped_column(String(64))
    """sha256 of the open challenge's secret (single use; None: none open)."""
    device_key_in_tpm: Mapped[bool] = mapped_column(Boolean, default=False)
    baseline: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The last evidence whose quote verified: {event_log, pcrs} (for accept-baseline)."""
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    attested_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_reason: Mapped[str] = mapped_column(Text, default="")


class AttestNonce(Base):
    __tablename__ = "attest_nonces"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class IntegrityToken(Base):
    __tablename__ = "integrity_tokens"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class IssuedConfig(Base):
    """A config envelope sent to a node: the digest of its payload and its images."""

    __tablename__ = "issued_configs"
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    payload_sha256: Mapped[str] = mapped_column(String(64), index=True)
    signer_sha256: Mapped[str | None] = mapped_column(String(64))
    """The config-signing cert that signed it (a rotation re-signs configs of older ones)."""
    generation: Mapped[int] = mapped_column(Integer)
    images: Mapped[list[Any]] = mapped_column(JSON, default=list)
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TrustPolicy(Base):
    """The fleet's trust policy (one row, id 1)."""

    __tablename__ = "trust_policy"
    id: Mapped[int] = mapped_column(primary_key=True)
    tpm_less: Mapped[str] = mapped_column(String(8), default="refuse")
    """allow | refuse: what a node without a TPM gets."""
    agent_allowlist: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Agent code digests allowed fleet-wide; empty = each node's own baseline decides."""
    token_ttl_s: Mapped[float] = mapped_column(Float, default=900.0)
    nonce_ttl_s: Mapped[float] = mapped_column(Float, default=60.0)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
