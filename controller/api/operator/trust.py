"""Operator API for trust (``/api/v1/trust/``): attestation states, the fleet policy,
accepting a new baseline, revoking a node, rotating the config-signing cert."""

from __future__ import annotations

import dataclasses

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from controller.api.auth import require_role
from controller.api.openapi import doc
from controller.domain.common import parse
from controller.store.lookup import find_node
from controller.store.models import Node, NodeTrust
from controller.trust import actions
from controller.trust.actions import PolicyPatch, RevokeBody
from controller.trust.state import fleet_policy
from controller.trust.views import policy_json, trust_json
from controller.web.body import json_body
from controller.web.context import actor, svc

__all__ = ["ops_trust_api"]

ops_trust_api = Blueprint("ops_trust_api", __name__, url_prefix="/api/v1/trust")


@ops_trust_api.get("/nodes")
@require_role("viewer")
@doc("Attestation state of every registered node")
def list_trust() -> ResponseReturnValue:
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
def show_trust(key: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        node = find_node(s, key)
        return jsonify(trust_json(node, s.get(NodeTrust, node.id), full=True))


@ops_trust_api.post("/nodes/<key>/accept-baseline")
@require_role("operator")
@doc("Accept the node's last verified measurements as its new baseline")
def accept_baseline(key: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        node, trust = actions.accept_baseline(s, actor(), key)
        return jsonify(trust_json(node, trust, full=True))


@ops_trust_api.post("/nodes/<key>/revoke")
@require_role("admin")
@doc("Revoke a node: every request it makes is refused (403)", body=RevokeBody)
def revoke(key: str) -> ResponseReturnValue:
    body = parse(RevokeBody, json_body())
    with svc().db.transaction() as s:
        node, trust = actions.revoke(s, actor(), key, body.reason)
        return jsonify(trust_json(node, trust))


@ops_trust_api.get("/policy")
@require_role("viewer")
@doc("The fleet trust policy")
def get_policy() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        return jsonify(policy_json(fleet_policy(s)))


@ops_trust_api.patch("/policy")
@require_role("admin")
@doc("Change the fleet trust policy", body=PolicyPatch)
def patch_policy() -> ResponseReturnValue:
    body = parse(PolicyPatch, json_body())
    with svc().db.transaction() as s:
        return jsonify(policy_json(actions.set_policy(s, actor(), body)))


@ops_trust_api.post("/rotate-signing")
@require_role("admin")
@doc("Issue a new config-signing cert under the root; nodes fetch it through certs")
def rotate_signing() -> ResponseReturnValue:
    services = svc()
    old_sha = services.pki.signing.sha256
    new_pki = actions.rotate_signing(services, actor())
    current_app.extensions["outpost"] = dataclasses.replace(services, pki=new_pki)
    return jsonify({"previous_sha256": old_sha, "signing_sha256": new_pki.signing.sha256})
