"""Operator API: the audit log, fleet events, and the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import Field, StringConstraints
from sqlalchemy import select

from controller.api.auth import require_role
from controller.api.openapi import build_openapi, doc
from controller.api.operator.blueprint import ops_api
from controller.domain import events
from controller.domain.common import Body, parse
from controller.store.lookup import find_app, find_node
from controller.store.models import AuditEvent, utcnow
from controller.web.context import svc
from protocol.desired_state import Name


class AuditQuery(Body):
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since_s: float | None = Field(default=None, ge=0, le=366 * 86400)
    """Only entries of the last ``since_s`` seconds."""
    limit: int = Field(default=100, ge=1, le=1000)


class EventQuery(Body):
    node: Annotated[str, StringConstraints(max_length=128)] | None = None
    """Serial or uuid."""
    app: Name | None = None
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z._]{0,63}$")] | None = None
    """A kind or its prefix (``app``, ``app.crashloop``, ``node.offline``, ``attestation``)."""
    since_s: float | None = Field(default=None, ge=0, le=366 * 86400)
    """Only events of the last ``since_s`` seconds."""
    limit: int = Field(default=100, ge=1, le=1000)

    def since_datetime(self) -> dt.datetime | None:
        return None if self.since_s is None else utcnow() - dt.timedelta(seconds=self.since_s)


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
    if q.since_s is not None:
        stmt = stmt.where(AuditEvent.at >= utcnow() - dt.timedelta(seconds=q.since_s))
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
@doc(
    "The fleet's event stream (newest first), filterable by node, app, kind and time",
    query=EventQuery,
    errors=(404,),  # the node a filter names
)
def fleet_events() -> ResponseReturnValue:
    q = parse(EventQuery, request.args.to_dict())
    with svc().db.transaction() as s:
        node = find_node(s, q.node) if q.node else None
        app = find_app(s, q.app) if q.app else None
        rows = events.query(
            s,
            node=node,
            app_uuid=app.uuid if app else None,
            kind=q.kind,
            since=q.since_datetime(),
            limit=q.limit,
        )
        return jsonify({"events": [r.as_json() for r in rows]})


@ops_api.get("/openapi.json")
@doc("This document")
def openapi() -> ResponseReturnValue:
    return jsonify(build_openapi(current_app))
