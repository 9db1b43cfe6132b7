"""Operator actions on trust: accept a node's measurements as its baseline, revoke a node,
change the fleet policy, rotate the config-signing certificate.  Each is audited with its
state before and after, in the caller's transaction.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from attestation import pki
from controller.errors import ApiError
from controller.services import Services
from controller.store.audit import audit
from controller.store.lookup import find_node
from controller.store.models import Node, NodeTrust, TrustPolicy, utcnow
from controller.store.pki import ControllerPki
from controller.trust.policy import baseline_from
from controller.trust.state import drop_tokens, fleet_policy, trust_of
from controller.trust.views import policy_json
from protocol.attest import Measurement

__all__ = [
    "PolicyPatch",
    "RevokeBody",
    "accept_baseline",
    "revoke",
    "rotate_signing",
    "set_policy",
]

Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PolicyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tpm_less: Literal["allow", "refuse"] | None = None
    agent_allowlist: list[Digest] | None = Field(default=None, max_length=256)
    token_ttl_s: float | None = Field(default=None, ge=10, le=7 * 86400)
    nonce_ttl_s: float | None = Field(default=None, ge=5, le=3600)


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    reason: Annotated[str, StringConstraints(min_length=1, max_length=512)]


def accept_baseline(s: Session, actor: str, key: str) -> tuple[Node, NodeTrust]:
    """The node's last verified measurements become its baseline (409 when it has none)."""
    node = find_node(s, key)
    trust = trust_of(s, node)
    evidence = trust.evidence or {}
    if not evidence.get("event_log"):
        raise ApiError(
            409, "conflict", f"node {node.serial!r} has no verified evidence to accept yet"
        )
    events = [Measurement.model_validate(e) for e in evidence["event_log"]]
    pcrs = {int(i): v for i, v in (evidence.get("pcrs") or {}).items()}
    if trust.tpm == "none":
        pcrs = {}
    before = trust.baseline
    trust.baseline = baseline_from(events, pcrs)
    audit(s, actor, "trust.accept_baseline", node.serial, before=before, after=trust.baseline)
    return node, trust


def revoke(s: Session, actor: str, key: str, reason: str) -> tuple[Node, NodeTrust]:
    """Every later request of the node is refused (403); its tokens are dropped."""
    node = find_node(s, key)
    if node.uuid is None:
        raise ApiError(409, "conflict", f"node {node.serial!r} never registered")
    trust = trust_of(s, node)
    if trust.revoked_at is None:
        trust.revoked_at, trust.revoked_reason = utcnow(), reason
        drop_tokens(s, node)
        audit(
            s,
            actor,
            "node.revoke",
            node.serial,
            before={"revoked": False},
            after={"revoked": True, "reason": reason},
        )
    return node, trust


def set_policy(s: Session, actor: str, patch: PolicyPatch) -> TrustPolicy:
    policy = fleet_policy(s)
    before = policy_json(policy)
    for name, value in patch.model_dump(exclude_none=True).items():
        setattr(policy, name, value)
    policy.updated_at = utcnow()
    audit(s, actor, "trust.policy", "fleet", before=before, after=policy_json(policy))
    return policy


def rotate_signing(services: Services, actor: str) -> ControllerPki:
    """Issue a new config-signing cert under the root; the old one is kept beside it.

    Returns the controller's PKI with the new signing identity (the caller installs it)."""
    ctl_pki = services.pki
    new = pki.issue_cert(
        ctl_pki.root, "Outpost config signing", usage=ExtendedKeyUsageOID.CODE_SIGNING
    )
    pki_dir = services.settings.pki_dir
    old_sha = ctl_pki.signing.sha256
    with services.db.transaction() as s:
        audit(
            s,
            actor,
            "pki.rotate_signing",
            "config-signing",
            before={"cert_sha256": old_sha},
            after={"cert_sha256": new.sha256},
        )
        pki.save_identity(
            ctl_pki.signing,
            pki_dir / f"signing-{old_sha[:16]}.pem",
            pki_dir / f"signing-{old_sha[:16]}.key",
        )
        pki.save_identity(new, pki_dir / "signing.pem", pki_dir / "signing.key")
    return dataclasses.replace(ctl_pki, signing=new)
