"""Operator API: onboarding batches — list them, revoke one (its onboarding certificate
registers nothing any more)."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue

from controller.api.auth import require_role
from controller.api.openapi import doc
from controller.api.operator.blueprint import ops_api
from controller.domain import batches
from controller.web.body import json_body
from controller.web.context import actor, svc


@ops_api.get("/onboarding/batches")
@require_role("viewer")
@doc("Onboarding batches issued (bundles), their certificates and whether revoked")
def list_batches() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        return jsonify({"batches": batches.list_batches(s)})


@ops_api.post("/onboarding/batches/<name>/revoke")
@require_role("admin")
@doc(
    "Revoke an onboarding batch: its certificate registers no node any more (nodes already"
    " registered stay); its pending registrations are dropped",
    body=batches.RevokeBatchBody,
)
def revoke_batch(name: str) -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        return jsonify({"batches": batches.revoke_batch(s, actor(), name, data)})
