"""Operator API for trust (``/api/v1/trust/``): attestation states, the fleet policy,
accepting a new baseline, revoking a node, rotating the config-signing cert.

Every change is audited with its state before and after, in the same transaction.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from cryptography.x509.oid import ExtendedKeyUsageOID
from flask import Blueprint, current_app, jsonify, request
from pydantic import Field, StringConstraints
from sqlalchemy import select

from attestation import pki
from controller.attestation_policy import baseline_from
from controller.attestation_store import NodeTrust, drop_tokens, fleet_policy, trust_of
from controller.auth import require_role
from controller.db import Node, utcnow
from controller.errors import ApiError
from controller.openapi import doc
from controller.ops.common import Body, audit, find_node, parse, svc
from protocol.attest import Measurement

__all__ = ["ops_trust_api", "trust_json"]

ops_trust_api = Blueprint("ops_trust_api", __name__, url_prefix="/api/v1/trust")
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PolicyPatch(Body):
    tpm_less: Literal["allow", "refuse"] | None = None
    agent_allowlist: list[Digest] | None = Field(default=None, max_length=256)
    token_ttl_s: float | None = Field(default=None, ge=10, le=7 * 86400)
    nonce_ttl_s: float | None = Field(default=None, ge=5, le=3600)


class RevokeBody(Body):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=512)]


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def trust_json(node: Node, trust: NodeTrust | None, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "serial": node.serial,
        "uuid": node.uuid,
        "state": "revoked"
        if trust and trust.revoked_at
        else (trust.state if trust else "unattested"),
        "result": trust.result if trust else "",
        "reason": (trust.revoked_reason if trust.revoked_at else trust.reason) if trust else "",
        "tpm": trust.tpm if trust else "",
        "device_key_in_tpm": bool(trust and trust.device_key_in_tpm),
        "ak_name": trust.ak_name if trust else None,
        "last_attempt_at": _iso(trust.last_attempt_at) if trust else None,
        "attested_at": _iso(trust.attested_at) if trust else None,
        "revoked_at": _iso(trust.revoked_at) if trust else None,
    }
    if full:
        out["baseline"] = trust.baseline if trust else {}
        out["evidence"] = trust.evidence if trust else {}
    return out


def _policy_json(policy: Any) -> dict[str, Any]:
    return {
        "tpm_less": policy.tpm_less,
        "agent_allowlist": list(policy.agent_allowlist or []),
        "token_ttl_s": policy.token_ttl_s,
        "nonce_ttl_s": policy.nonce_ttl_s,
    }


@ops_trust_api.get("/nodes")
@require_role("viewer")
@doc("Attestation state of every registered node")
def list_trust():  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        rows = s.execute(
            select(Node, NodeTrust)
            .outerjoin(NodeTrust, NodeTrust.node_id == Node.id)
            .where(Node.uuid.is_not(None))
            .order_by(Node.serial)
        ).all()
        return jsonify({"nodes": [trust_json(n, t) for n, t in rows]})


@ops_trust_api.get("/nodes/<key>")
@require_role("viewer")
@doc("A node's attestation state, baseline and last verified evidence")
def show_trust(key: str):  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        node = find_node(s, key)
        return jsonify(trust_json(node, s.get(NodeTrust, node.id), full=True))


@ops_trust_api.post("/nodes/<key>/accept-baseline")
@require_role("operator")
@doc("Accept the node's last verified measurements as its new baseline")
def accept_baseline(key: str):  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
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
        audit(s, "trust.accept_baseline", node.serial, before=before, after=trust.baseline)
        return jsonify(trust_json(node, trust, full=True))


@ops_trust_api.post("/nodes/<key>/revoke")
@require_role("admin")
@doc("Revoke a node: every request it makes is refused (403)", body=RevokeBody)
def revoke(key: str):  # type: ignore[no-untyped-def]
    body = parse(RevokeBody, request.get_json(silent=True))
    with svc().db.transaction() as s:
        node = find_node(s, key)
        if node.uuid is None:
            raise ApiError(409, "conflict", f"node {node.serial!r} never registered")
        trust = trust_of(s, node)
        if trust.revoked_at is None:
            trust.revoked_at, trust.revoked_reason = utcnow(), body.reason
            drop_tokens(s, node)
            audit(
                s,
                "node.revoke",
                node.serial,
                before={"revoked": False},
                after={"revoked": True, "reason": body.reason},
            )
        return jsonify(trust_json(node, trust))


@ops_trust_api.get("/policy")
@require_role("viewer")
@doc("The fleet trust policy")
def get_policy():  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        return jsonify(_policy_json(fleet_policy(s)))


@ops_trust_api.patch("/policy")
@require_role("admin")
@doc("Change the fleet trust policy", body=PolicyPatch)
def patch_policy():  # type: ignore[no-untyped-def]
    body = parse(PolicyPatch, request.get_json(silent=True))
    with svc().db.transaction() as s:
        policy = fleet_policy(s)
        before = _policy_json(policy)
        for name, value in body.model_dump(exclude_none=True).items():
            setattr(policy, name, value)
        policy.updated_at = utcnow()
        audit(s, "trust.policy", "fleet", before=before, after=_policy_json(policy))
        return jsonify(_policy_json(policy))


@ops_trust_api.post("/rotate-signing")
@require_role("admin")
@doc("Issue a new config-signing cert under the root; nodes fetch it through certs")
def rotate_signing():  # type: ignore[no-untyped-def]
    services = svc()
    ctl_pki = services.pki
    new = pki.issue_cert(
        ctl_pki.root, "Outpost config signing", usage=ExtendedKeyUsageOID.CODE_SIGNING
    )
    pki_dir = services.settings.pki_dir
    old_sha = ctl_pki.signing.sha256
    with services.db.transaction() as s:
        audit(
            s,
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
    current_app.extensions["outpost"] = dataclasses.replace(
        services, pki=dataclasses.replace(ctl_pki, signing=new)
    )
    return jsonify({"previous_sha256": old_sha, "signing_sha256": new.sha256})
