"""Operator API: staged rollouts — start, list, show progress, approve, pause, resume,
roll back."""

from __future__ import annotations

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from controller.api.auth import require_role
from controller.api.openapi import Link, doc
from controller.api.operator.blueprint import ops_api
from controller.domain.common import Body, parse
from controller.rollouts import service
from controller.rollouts.plan import RolloutBody
from controller.store.models import App, Rollout
from controller.web.body import json_body, optional_json_body
from controller.web.context import actor, svc
from protocol.desired_state import Name

__all__ = ["ApproveBody", "RolloutQuery"]


class RolloutQuery(Body):
    app: Name | None = None


class ApproveBody(Body):
    ring: int | None = Field(default=None, ge=0, le=9)
    """The ring to approve (default: the one waiting)."""


@ops_api.post("/rollouts")
@require_role("operator")
@doc(
    "Roll a new app version out through rings with health gates",
    body=RolloutBody,
    status=201,
    links={
        "ShowRollout": Link("ops_api.show_rollout.get", {"rid": "$response.body#/id"}),
        "ApproveRollout": Link("ops_api.approve_rollout.post", {"rid": "$response.body#/id"}),
        "PauseRollout": Link("ops_api.pause_rollout.post", {"rid": "$response.body#/id"}),
    },
)
def start_rollout() -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        r = service.start(s, actor(), data)
        return jsonify(service.rollout_json(s, r)), 201


@ops_api.get("/rollouts")
@require_role("viewer")
@doc("List rollouts (newest first)", query=RolloutQuery)
def list_rollouts() -> ResponseReturnValue:
    query = parse(RolloutQuery, request.args.to_dict())
    with svc().db.transaction() as s:
        stmt = select(Rollout).order_by(Rollout.id.desc()).limit(200)
        if query.app:
            stmt = stmt.join(App, App.id == Rollout.app_id).where(App.name == query.app)
        rows = s.scalars(stmt).all()
        return jsonify({"rollouts": [service.rollout_json(s, r, full=False) for r in rows]})


@ops_api.get("/rollouts/<id:rid>")
@require_role("viewer")
@doc("A rollout with its progress per ring and per node")
def show_rollout(rid: int) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        return jsonify(service.rollout_json(s, service.find_rollout(s, rid)))


@ops_api.post("/rollouts/<id:rid>/approve")
@require_role("operator")
@doc(
    "Approve the ring waiting for approval (no body: the ring waiting)",
    body=ApproveBody,
    body_optional=True,
)
def approve_rollout(rid: int) -> ResponseReturnValue:
    data = optional_json_body()  # empty: approve the waiting ring; anything else is checked
    body = parse(ApproveBody, {} if data is None else data)
    with svc().db.transaction() as s:
        return jsonify(service.rollout_json(s, service.approve(s, actor(), rid, body.ring)))


def _action(name: str, summary: str) -> None:
    fn = getattr(service, name)

    @require_role("operator")
    @doc(summary)
    def view(rid: int) -> ResponseReturnValue:
        with svc().db.transaction() as s:
            return jsonify(service.rollout_json(s, fn(s, actor(), rid)))

    view.__name__ = f"{name}_rollout"
    ops_api.add_url_rule(f"/rollouts/<id:rid>/{name}", view.__name__, view, methods=["POST"])


_action("pause", "Pause a rollout (no ring advances; nodes keep what they run)")
_action("resume", "Resume a paused rollout (the current ring's health window starts over)")
_action("rollback", "Roll back: every node returns to the previous version")
