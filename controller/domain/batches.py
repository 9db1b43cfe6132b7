"""Onboarding batches: every onboarding bundle issued is recorded (batch name, its
certificate's sha256), can be listed, and can be revoked — a revoked batch's onboarding
certificate registers nothing any more (nodes already registered through it stay).

    issue_bundle(s, actor, pki, out_dir, url, batch)  write a bundle and record its cert
    batch_of(s, cert)                                  the batch row at register (recorded
                                                       as ``seen`` when it predates records)
    revoke_batch(s, actor, name, reason)               every cert of that batch name
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from cryptography import x509
from pydantic import StringConstraints
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from attestation import pki
from controller.domain.common import Body, parse
from controller.errors import ApiError
from controller.store.audit import audit
from controller.store.models import Node, OnboardingBatch, PendingRegistration, utcnow
from controller.store.pki import ControllerPki, write_onboarding_bundle

__all__ = [
    "BATCH_PATTERN",
    "RevokeBatchBody",
    "batch_json",
    "batch_of",
    "issue_bundle",
    "list_batches",
    "revoke_batch",
]

BATCH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class RevokeBatchBody(Body):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=512)]


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def _record(s: Session, name: str, cert: x509.Certificate, created_by: str) -> OnboardingBatch:
    row = OnboardingBatch(
        name=name[:63],
        cert_sha256=pki.cert_sha256(cert),
        not_after=cert.not_valid_after_utc.replace(tzinfo=None),
        created_by=created_by[:64],
    )
    s.add(row)
    s.flush()
    return row


def issue_bundle(
    s: Session,
    actor: str,
    ctl_pki: ControllerPki,
    out_dir: Path,
    url: str,
    batch: str,
    labels: dict[str, str] | None = None,
) -> OnboardingBatch:
    """Issue and write an onboarding bundle for ``batch`` (``labels``: what its nodes
    report about themselves, e.g. their site); record and audit it."""
    if not re.match(BATCH_PATTERN, batch):
        raise ApiError(422, "invalid_body", "batch: 1-63 of A-Z a-z 0-9 . _ - (letter/digit first)")
    cert = write_onboarding_bundle(ctl_pki, out_dir, url, batch, labels)
    row = _record(s, batch, cert, actor)
    audit(s, actor, "onboarding.bundle", batch, cert_sha256=row.cert_sha256, controller_url=url)
    return row


def _batch_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    common = str(names[0].value) if names else ""
    return common.removeprefix("onboarding ") or "unknown"


def batch_of(s: Session, cert: x509.Certificate) -> OnboardingBatch:
    """The batch of an onboarding cert that chains to the onboarding CA; one issued before
    batches were recorded is recorded now (``created_by`` = ``seen``) so it can be revoked."""
    sha = pki.cert_sha256(cert)
    row = s.scalar(select(OnboardingBatch).where(OnboardingBatch.cert_sha256 == sha))
    return row if row is not None else _record(s, _batch_name(cert), cert, "seen")


def batch_json(s: Session, row: OnboardingBatch) -> dict[str, Any]:
    nodes = s.scalar(
        select(func.count()).select_from(Node).where(Node.onboarding_cert_sha256 == row.cert_sha256)
    )
    return {
        "name": row.name,
        "cert_sha256": row.cert_sha256,
        "created_at": _iso(row.created_at),
        "created_by": row.created_by,
        "not_after": _iso(row.not_after),
        "revoked": row.revoked_at is not None,
        "revoked_at": _iso(row.revoked_at),
        "revoked_reason": row.revoked_reason,
        "registered_nodes": int(nodes or 0),
    }


def list_batches(s: Session) -> list[dict[str, Any]]:
    rows = s.scalars(select(OnboardingBatch).order_by(OnboardingBatch.id)).all()
    return [batch_json(s, r) for r in rows]


def revoke_batch(s: Session, actor: str, name: str, data: Any) -> list[dict[str, Any]]:
    """``POST /onboarding/batches/<name>/revoke``: its certs register nothing from now on;
    the pending registrations made with them are dropped."""
    body = parse(RevokeBatchBody, data)
    rows = s.scalars(select(OnboardingBatch).where(OnboardingBatch.name == name)).all()
    if not rows:
        raise ApiError(404, "not_found", f"no onboarding batch named {name!r}")
    for row in rows:
        if row.revoked_at is None:
            row.revoked_at, row.revoked_reason = utcnow(), body.reason
            s.execute(
                delete(PendingRegistration).where(
                    PendingRegistration.onboarding_cert_sha256 == row.cert_sha256
                )
            )
            audit(
                s,
                actor,
                "onboarding.revoke_batch",
                name,
                before={"revoked": False},
                after={"revoked": True, "reason": body.reason},
                cert_sha256=row.cert_sha256,
            )
    return [batch_json(s, r) for r in rows]
