"""Operator API: app definitions — create, show, replace (update), delete, label selectors."""

from __future__ import annotations

from flask import jsonify
from sqlalchemy import select

from controller import actions
from controller.auth import require_role
from controller.db import App, Assignment, Image, Node
from controller.gitops.ownership import refuse_if_git_owned
from controller.openapi import doc
from controller.ops.blueprint import ops_api
from controller.ops.bodies import AppBody
from controller.ops.common import app_json, audit, changed, find_app, json_body, svc
from controller.rollouts.guard import refuse_if_rolling


@ops_api.post("/apps")
@require_role("operator")
@doc("Define an app", body=AppBody, status=201)
def create_app_def():  # type: ignore[no-untyped-def]
    data = json_body()
    with svc().db.transaction() as s:
        out = actions.create_app(s, data)
    return jsonify(out), 201


@ops_api.put("/apps/<name>")
@require_role("operator")
@doc("Replace an app's definition (its uuid stays; nodes get the change)", body=AppBody)
def replace_app(name: str):  # type: ignore[no-untyped-def]
    data = json_body()
    with svc().db.transaction() as s:
        out = actions.replace_app(s, name, data)
    return jsonify(out)


@ops_api.get("/apps")
@require_role("viewer")
@doc("List apps")
def list_apps():  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        rows = s.execute(
            select(App, Image).join(Image, Image.id == App.image_id).order_by(App.name)
        ).all()
        return jsonify({"apps": [app_json(a, i) for a, i in rows]})


@ops_api.get("/apps/<name>")
@require_role("viewer")
@doc("Show an app and where it runs")
def show_app(name: str):  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        app = find_app(s, name)
        out = app_json(app, s.get(Image, app.image_id))  # type: ignore[arg-type]
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
                "state": next(
                    (
                        x.get("state")
                        for x in (n.info or {}).get("apps", [])
                        if x.get("uuid") == app.uuid
                    ),
                    None,
                ),
            }
            for n, a in rows
        ]
        return jsonify(out)


@ops_api.delete("/apps/<name>")
@require_role("operator")
@doc("Delete an app (every node stops and removes it)")
def delete_app(name: str):  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        app = find_app(s, name)
        refuse_if_git_owned(s, "App", name)
        refuse_if_rolling(s, app)
        before = app_json(app, s.get(Image, app.image_id))  # type: ignore[arg-type]
        for inst in s.scalars(select(Assignment).where(Assignment.app_id == app.id)):
            s.delete(inst)
        s.delete(app)
        audit(s, "app.delete", name, before=before)
        changed(s)
    return jsonify({"deleted": name})
