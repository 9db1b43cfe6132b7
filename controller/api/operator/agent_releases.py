"""Operator API: agent releases (upload, list) and a node's target release."""

from __future__ import annotations

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from controller.api.auth import require_role
from controller.api.openapi import doc
from controller.api.operator.blueprint import ops_api
from controller.domain import agent_releases
from controller.web.body import json_body
from controller.web.context import actor, svc
from protocol.desired_state import MAX_AGENT_BUNDLE_BYTES


@ops_api.post("/agent-releases")
@require_role("operator")
@doc(
    "Upload an agent release bundle (body: the tarball; see `outpost agent-release build`)",
    query=agent_releases.ReleaseQuery,
    raw_body="application/gzip",
    status=201,
)
def upload_agent_release() -> ResponseReturnValue:
    request.max_content_length = MAX_AGENT_BUNDLE_BYTES  # before reading the body
    out = agent_releases.upload_release(svc(), actor(), request.args.to_dict(), request.stream)
    return jsonify(out), 201


@ops_api.get("/agent-releases")
@require_role("viewer")
@doc("List agent releases and the nodes that target each")
def list_agent_releases() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        return jsonify({"releases": agent_releases.list_releases(s)})


@ops_api.put("/nodes/<key>/agent-release")
@require_role("operator")
@doc(
    "Set the agent release a node should run (null: keep its version); the node installs"
    " it, switches and keeps it only if it re-attests and reports within the commit window",
    body=agent_releases.NodeReleaseBody,
)
def put_node_agent_release(key: str) -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        return jsonify(agent_releases.set_node_release(s, svc(), actor(), key, data))
