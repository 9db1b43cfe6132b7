"""Operator API: remote access — grants, sessions, recordings, the policy.

    POST   /api/v1/remote/grants                 create (operator; a node shell: admin)
    GET    /api/v1/remote/grants                 list (viewer)
    POST   /api/v1/remote/grants/<id>/approve    a second person approves (site policy)
    POST   /api/v1/remote/grants/<id>/revoke     live sessions under it close
    POST   /api/v1/remote/sessions               open a session under a grant → its id,
                                                 the one-time attach ticket, the path
    GET    /api/v1/remote/sessions               list (viewer); ``?live=1``, ``?node=``
    GET    /api/v1/remote/sessions/<id>          one (viewer)
    POST   /api/v1/remote/sessions/<id>/close    close a live session
    GET    /api/v1/remote/sessions/<id>/recording  asciicast v2 (operator: recordings may
                                                 show secrets)
    GET|PUT /api/v1/remote/policy                read (viewer) / change (admin)

The WebSocket streams and the node's side are in :mod:`controller.api.remote_stream`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from controller.api.auth import require_role
from controller.api.openapi import doc
from controller.domain.common import Body, parse
from controller.errors import ApiError
from controller.remote import grants, sessions
from controller.remote import policy as policy_rules
from controller.remote.recording import cast_file
from controller.store.lookup import find_node
from controller.store.models import ApiToken, Node
from controller.web.body import json_body
from controller.web.context import actor, svc

__all__ = ["actor_role", "remote_api"]

remote_api = Blueprint("remote_api", __name__, url_prefix="/api/v1/remote")


def actor_role() -> str:
    """The role of this request's caller (an API token, or a logged-in UI user)."""
    ui_user = g.get("ui_user")
    if ui_user is not None:
        return str(ui_user.role)
    name = actor().removeprefix("token:")
    with svc().db.transaction() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise ApiError(401, "unauthenticated", "unknown token")
    return token.role


def _nodes(s: Any, ids: set[int]) -> dict[int, Node]:
    return {n.id: n for n in s.scalars(select(Node).where(Node.id.in_(ids)))} if ids else {}


class ListQuery(Body):
    text_booleans = True  # ?live=true
    live: bool = False
    node: str | None = Field(default=None, max_length=128)
    limit: int = Field(default=200, ge=1, le=1000)


@remote_api.post("/grants")
@require_role("operator")
@doc(
    "Grant someone a console, exec, node shell or port-forward for a time",
    body=grants.GrantBody,
    status=201,
)
def create_grant() -> ResponseReturnValue:
    role = actor_role()
    with svc().db.transaction() as s:
        grant = grants.create(s, actor(), role, json_body())
        return jsonify(grants.grant_view(grant, s.get(Node, grant.node_id))), 201


@remote_api.get("/grants")
@require_role("viewer")
@doc("List grants (newest first)", query=ListQuery)
def list_grants() -> ResponseReturnValue:
    query = parse(ListQuery, request.args.to_dict())
    with svc().db.transaction() as s:
        rows = grants.list_grants(s, live_only=query.live, limit=query.limit)
        nodes = _nodes(s, {r.node_id for r in rows})
        return jsonify({"grants": [grants.grant_view(r, nodes.get(r.node_id)) for r in rows]})


@remote_api.post("/grants/<grant_id>/approve")
@require_role("operator")
@doc("Approve a grant that waits for a second person")
def approve_grant(grant_id: str) -> ResponseReturnValue:
    role = actor_role()
    with svc().db.transaction() as s:
        grant = grants.approve(s, actor(), role, grant_id)
        return jsonify(grants.grant_view(grant, s.get(Node, grant.node_id)))


@remote_api.post("/grants/<grant_id>/revoke")
@require_role("operator")
@doc("Revoke a grant; its live sessions close within two seconds")
def revoke_grant(grant_id: str) -> ResponseReturnValue:
    role = actor_role()
    with svc().db.transaction() as s:
        grant = grants.revoke(s, actor(), role, grant_id)
        return jsonify(grants.grant_view(grant, s.get(Node, grant.node_id)))


@remote_api.post("/sessions")
@require_role("operator")
@doc(
    "Open a session under a grant (attach to it over WebSocket)", body=sessions.OpenBody, status=201
)
def open_session() -> ResponseReturnValue:
    role = actor_role()
    with svc().db.transaction() as s:
        row, ticket = sessions.open_session(s, actor(), role, json_body())
        view = sessions.session_view(row, s.get(Node, row.node_id))
    return jsonify({**view, "ticket": ticket}), 201


@remote_api.get("/sessions")
@require_role("viewer")
@doc("List sessions (newest first)", query=ListQuery, errors=(404,))  # 404: the node named
def list_sessions() -> ResponseReturnValue:
    query = parse(ListQuery, request.args.to_dict())
    with svc().db.transaction() as s:
        sessions.sweep(s)
        node_id = find_node(s, query.node).id if query.node else None
        rows = sessions.list_sessions(s, node_id=node_id, live_only=query.live, limit=query.limit)
        nodes = _nodes(s, {r.node_id for r in rows})
        return jsonify({"sessions": [sessions.session_view(r, nodes.get(r.node_id)) for r in rows]})


@remote_api.get("/sessions/<session_id>")
@require_role("viewer")
@doc("One session: who, what, when, bytes, how it ended")
def get_session(session_id: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        sessions.sweep(s)
        row = sessions.find_session(s, session_id)
        return jsonify(sessions.session_view(row, s.get(Node, row.node_id)))


@remote_api.post("/sessions/<session_id>/close")
@require_role("operator")
@doc("Close a live session")
def close_session(session_id: str) -> ResponseReturnValue:
    role = actor_role()
    with svc().db.transaction() as s:
        row = sessions.close_session(s, actor(), role, session_id)
        return jsonify(sessions.session_view(row, s.get(Node, row.node_id)))


def recording_response(session_id: str) -> Response:
    """The session's asciicast v2 file (404 for a port-forward: nothing recorded)."""
    with svc().db.transaction() as s:
        text = cast_file(s, sessions.find_session(s, session_id))
    resp = Response(text, mimetype="application/x-asciicast")
    resp.headers["Content-Disposition"] = f'attachment; filename="session-{session_id}.cast"'
    return resp


@remote_api.get("/sessions/<session_id>/recording")
@require_role("operator")
@doc("A session's recording (asciicast v2)")
def get_recording(session_id: str) -> ResponseReturnValue:
    return recording_response(session_id)


@remote_api.get("/policy")
@require_role("viewer")
@doc("The remote-access policy")
def get_policy() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        return jsonify(policy_rules.policy_view(policy_rules.current(s)))


@remote_api.put("/policy")
@require_role("admin")
@doc("Change the remote-access policy", body=policy_rules.PolicyBody)
def put_policy() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        found = policy_rules.update(s, actor(), json_body())
        return jsonify(policy_rules.policy_view(found))
