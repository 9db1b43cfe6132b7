"""Operator API: app definitions — create, show, replace (update), delete, label selectors.

Secret env values (``secret_env``) are shown to operators and admins (they set them);
a viewer token sees ``<secret>``."""

from __future__ import annotations

import datetime as dt

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from controller.api.auth import caller_has, require_role
from controller.api.openapi import Link, doc
from controller.api.operator.blueprint import ops_api
from controller.domain import apps
from controller.domain.app_metrics import app_metrics
from controller.domain.bodies import AppBody
from controller.domain.common import Body, parse
from controller.domain.status import app_status
from controller.domain.views import app_json
from controller.store.lookup import find_app
from controller.store.models import App, Assignment, Image, Node
from controller.web.body import json_body
from controller.web.context import actor, svc


@ops_api.post("/apps")
@require_role("operator")
@doc(
    "Define an app",
    body=AppBody,
    status=201,
    links={
        "ShowApp": Link("ops_api.show_app.get", {"name": "$response.body#/name"}),
        "ReplaceApp": Link("ops_api.replace_app.put", {"name": "$response.body#/name"}),
        "DeleteApp": Link("ops_api.delete_app.delete", {"name": "$response.body#/name"}),
    },
)
def create_app_def() -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        apps.create_app(s, actor(), data)
        app = find_app(s, str(data.get("name")))
        out = app_json(app, s.get(Image, app.image_id), reveal=True)  # type: ignore[arg-type]
    return jsonify(out), 201


@ops_api.put("/apps/<name>")
@require_role("operator")
@doc("Replace an app's definition (its uuid stays; nodes get the change)", body=AppBody)
def replace_app(name: str) -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        apps.replace_app(s, actor(), name, data)
        app = find_app(s, name)
        out = app_json(app, s.get(Image, app.image_id), reveal=True)  # type: ignore[arg-type]
    return jsonify(out)


@ops_api.get("/apps")
@require_role("viewer")
@doc("List apps")
def list_apps() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        rows = s.execute(
            select(App, Image).join(Image, Image.id == App.image_id).order_by(App.name)
        ).all()
        reveal = caller_has("operator")
        return jsonify({"apps": [app_json(a, i, reveal) for a, i in rows]})


@ops_api.get("/apps/<name>")
@require_role("viewer")
@doc("Show an app and where it runs")
def show_app(name: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        app = find_app(s, name)
        image = s.get(Image, app.image_id)
        assert image is not None
        out = app_json(app, image, reveal=caller_has("operator"))
        rows = s.execute(
            select(Node, Assignment)
            .join(Assignment, Assignment.node_id == Node.id)
            .where(Assignment.app_id == app.id)
            .order_by(Node.serial)
        ).all()
        out["instances"] = [
            {
                "node": n.serial,
                "explicit": a.explicit,
                "state": status.state if (status := app_status(n, app.uuid)) else None,
            }
            for n, a in rows
        ]
        return jsonify(out)


@ops_api.delete("/apps/<name>")
@require_role("operator")
@doc("Delete an app (every node stops and removes it)")
def delete_app(name: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        apps.delete_app(s, actor(), name)
    return jsonify({"deleted": name})


class AppMetricsQuery(Body):
    since_s: int = Field(default=3600, ge=0, le=7 * 86400)
    """How far back the series goes (seconds)."""


@ops_api.get("/apps/<name>/metrics")
@require_role("viewer")
@doc(
    "What the app reports about itself (fps, latency, …) on each node, latest and over time",
    query=AppMetricsQuery,
)
def show_app_metrics(name: str) -> ResponseReturnValue:
    query = parse(AppMetricsQuery, request.args.to_dict())
    since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=query.since_s)
    with svc().db.transaction() as s:
        return jsonify(app_metrics(s, find_app(s, name), since))
