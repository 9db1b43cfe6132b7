"""Attestation state in the database: per-node trust, nonces, integrity tokens, issued
configs and the fleet trust policy (tables on ``controller.store.models.Base``).

Secrets are stored hashed (tokens); nonces are single use (deleted when taken) and
expire.  Everything is read and written inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import (
    delete,
    select,
)
from sqlalchemy.orm import Session

from controller.store import notify
from controller.store.models import (
    AttestNonce,
    IntegrityToken,
    IssuedConfig,
    Node,
    NodeTrust,
    TrustPolicy,
    utcnow,
)

__all__ = [
    "check_token",
    "drop_tokens",
    "fleet_policy",
    "issue_nonce",
    "issue_token",
    "issued_for",
    "last_signer",
    "record_issued_config",
    "take_nonce",
    "token_sha256",
    "trust_of",
]

MAX_ISSUED_PER_NODE = 1000


def token_sha256(token: str) -> str:
    """How an integrity token is stored and looked up."""
    return _sha(token)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fleet_policy(session: Session) -> TrustPolicy:
    policy = session.get(TrustPolicy, 1)
    if policy is None:
        policy = TrustPolicy(
            id=1, tpm_less="refuse", agent_allowlist=[], token_ttl_s=900.0, nonce_ttl_s=60.0
        )
        session.add(policy)
        session.flush()
    return policy


def trust_of(session: Session, node: Node) -> NodeTrust:
    trust = session.get(NodeTrust, node.id)
    if trust is None:
        trust = NodeTrust(
            node_id=node.id,
            state="unattested",
            result="",
            reason="",
            tpm="",
            device_key_in_tpm=False,
            baseline={},
            evidence={},
            revoked_reason="",
        )
        session.add(trust)
        session.flush()
    return trust


def issue_nonce(session: Session, node: Node, ttl_s: float) -> str:
    now = utcnow()
    session.execute(delete(AttestNonce).where(AttestNonce.expires_at < now))
    nonce = secrets.token_hex(32)
    session.add(
        AttestNonce(nonce=nonce, node_id=node.id, expires_at=now + dt.timedelta(seconds=ttl_s))
    )
    return nonce


def take_nonce(session: Session, node: Node, nonce: str) -> bool:
    """Use up ``nonce``: True only if this node was given it and it has not expired."""
    row = session.get(AttestNonce, nonce)
    if row is None:
        return False
    session.delete(row)
    return row.node_id == node.id and row.expires_at >= utcnow()


def issue_token(session: Session, node: Node, ttl_s: float) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(
        delete(IntegrityToken).where(
            (IntegrityToken.expires_at < now) | (IntegrityToken.node_id == node.id)
        )
    )
    session.add(
        IntegrityToken(
            token_sha256=_sha(token), node_id=node.id, expires_at=now + dt.timedelta(seconds=ttl_s)
        )
    )
    notify.changed(session, node.id)  # processes that cached the old token look again
    return token


def check_token(session: Session, node: Node, token: str | None) -> str | None:
    """None when ``token`` is this node's live token; else the error code to answer with."""
    if not token:
        return "integrity_token_missing"
    row = session.get(IntegrityToken, _sha(token))
    if row is None or row.node_id != node.id:
        return "integrity_token_invalid"
    if row.expires_at < utcnow():
        return "integrity_token_expired"
    return None


def drop_tokens(session: Session, node: Node) -> None:
    session.execute(delete(IntegrityToken).where(IntegrityToken.node_id == node.id))
    session.execute(delete(AttestNonce).where(AttestNonce.node_id == node.id))
    notify.changed(session, node.id)  # every process drops what it cached, parked polls look again


def record_issued_config(
    session: Session,
    node: Node,
    payload_sha256: str,
    generation: int,
    images: list[str],
    signer_sha256: str | None = None,
) -> None:
    """Remember a config sent to ``node`` (its measured digest will be checked later)."""
    session.add(
        IssuedConfig(
            node_id=node.id,
            payload_sha256=payload_sha256,
            signer_sha256=signer_sha256,
            generation=generation,
            images=sorted(set(images)),
        )
    )
    session.flush()
    old = session.scalars(
        select(IssuedConfig.id)
        .where(IssuedConfig.node_id == node.id)
        .order_by(IssuedConfig.id.desc())
        .offset(MAX_ISSUED_PER_NODE)
    ).all()
    if old:
        session.execute(delete(IssuedConfig).where(IssuedConfig.id.in_(old)))


def last_signer(session: Session, node: Node) -> str | None:
    """The signing cert of the last config sent to ``node`` ('' for one recorded before
    signers were; None: none sent)."""
    row = session.execute(
        select(IssuedConfig.signer_sha256)
        .where(IssuedConfig.node_id == node.id)
        .order_by(IssuedConfig.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0] or "")


def issued_for(session: Session, node: Node) -> tuple[set[str], set[str]]:
    """(payload digests, image digests) of every config recorded as sent to ``node``."""
    payloads: set[str] = set()
    images: set[str] = set()
    for payload, imgs in session.execute(
        select(IssuedConfig.payload_sha256, IssuedConfig.images).where(
            IssuedConfig.node_id == node.id
        )
    ):
        payloads.add(payload)
        images.update(imgs or [])
    return payloads, images
