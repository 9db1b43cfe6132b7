"""Operator API: site policies (download caps and windows, switch-over windows, a nearer
datastore) — ``controller.domain.site_policies``."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from controller.api.auth import require_role
from controller.api.openapi import doc
from controller.api.operator.blueprint import ops_api
from controller.domain import site_policies
from controller.domain.site_policies import SitePolicyBody, SitePolicySpec
from controller.store.models import SitePolicy
from controller.web.body import json_body
from controller.web.context import actor, svc


@ops_api.get("/site-policies")
@require_role("viewer")
@doc("List site policies (in the order they win)")
def list_site_policies() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        rows = s.scalars(select(SitePolicy)).all()
        ordered = sorted(rows, key=lambda p: (-p.priority, p.name))
        return jsonify({"policies": [site_policies.policy_json(p) for p in ordered]})


@ops_api.post("/site-policies")
@require_role("operator")
@doc("Create a site policy", body=SitePolicyBody, status=201)
def create_site_policy() -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        row = site_policies.create_policy(s, actor(), data)
        return jsonify(site_policies.policy_json(row)), 201


@ops_api.put("/site-policies/<name>")
@require_role("operator")
@doc("Replace a site policy's settings", body=SitePolicySpec)
def put_site_policy(name: str) -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        return jsonify(site_policies.policy_json(site_policies.put_policy(s, actor(), name, data)))


@ops_api.delete("/site-policies/<name>")
@require_role("operator")
@doc("Delete a site policy")
def delete_site_policy(name: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        site_policies.delete_policy(s, actor(), name)
    return jsonify({"deleted": name})
