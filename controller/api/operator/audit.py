"""Operator API: the audit log, fleet events, and the OpenAPI document."""

from __future__ import annotations

from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from controller.api.auth import require_role
from controller.api.openapi import build_openapi, doc
from controller.api.operator.blueprint import ops_api
from controller.domain.common import Body, parse
from controller.store.models import AuditEvent, Event, Node
from controller.web.context import svc


class AuditQuery(Body):
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class EventQuery(Body):
    limit: int = Field(default=100, ge=1, le=1000)


@ops_api.get("/audit")
@require_role("viewer")
@doc("The audit log (newest first), filterable", query=AuditQuery)
def audit_log() -> ResponseReturnValue:
    q = parse(AuditQuery, request.args.to_dict())
    stmt = select(AuditEvent)
    for column, value in (
        (AuditEvent.actor, q.actor),
        (AuditEvent.action, q.action),
        (AuditEvent.target, q.target),
    ):
        if value:
            stmt = stmt.where(column == value)
    with svc().db.transaction() as s:
        rows = s.scalars(stmt.order_by(AuditEvent.id.desc()).limit(q.limit)).all()
        return jsonify(
            {
                "events": [
                    {
                        "at": e.at.isoformat() + "Z",
                        "actor": e.actor,
                        "action": e.action,
                        "target": e.target,
                        "detail": e.detail,
                        "before": e.before,
                        "after": e.after,
                    }
                    for e in rows
                ]
            }
        )


@ops_api.get("/events")
@require_role("viewer")
@doc("Recent events across the fleet (newest first)", query=EventQuery)
def events() -> ResponseReturnValue:
    q = parse(EventQuery, request.args.to_dict())
    with svc().db.transaction() as s:
        rows = s.execute(
            select(Event, Node.serial)
            .outerjoin(Node, Node.id == Event.node_id)
            .order_by(Event.id.desc())
            .limit(q.limit)
        ).all()
        return jsonify(
            {
                "events": [
                    {
                        "at": e.at.isoformat() + "Z",
                        "node": serial,
                        "kind": e.kind,
                        "message": e.message,
                    }
                    for e, serial in rows
                ]
            }
        )


@ops_api.get("/openapi.json")
@doc("This document")
def openapi() -> ResponseReturnValue:
    return jsonify(build_openapi(current_app))
