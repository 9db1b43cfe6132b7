"""Operator API: app definitions — create, show, replace (update), delete, label selectors."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from flask import jsonify, request
from pydantic import Field, ValidationError
from sqlalchemy import select

from controller.auth import require_role
from controller.db import App, Assignment, Image, Network, Node, utcnow
from controller.errors import ApiError, validation_details
from controller.openapi import doc
from controller.ops.blueprint import ops_api
from controller.ops.common import Body, app_json, audit, changed, find_app, image_json, parse, svc
from controller.ops.nodes import LabelKey, LabelValue
from protocol.desired_state import Adapter, AppNetwork, AppSpec, Name, Resources


class AppBody(Body):
    """An app definition as operators write it (the image by name)."""

    name: Name
    kind: Literal["vm", "container"]
    image: Name
    resources: Resources = Resources()
    env: dict[str, str] = Field(default_factory=dict)
    command: list[str] = Field(default_factory=list)
    desired: Literal["running", "stopped"] = "running"
    networks: list[AppNetwork] = Field(default_factory=list)
    adapters: list[Adapter] = Field(default_factory=list)
    start_delay_s: float = 0.0
    selector: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=16)
    """Run on every node whose labels include these (besides explicit assignments)."""


_SPEC_FIELDS = {"resources", "env", "command", "desired", "networks", "adapters", "start_delay_s"}


def _validated_spec(s: Any, body: AppBody, app_uuid: str) -> tuple[Image, dict[str, Any]]:
    """Check the body against the wire schema (the final judge) and the database."""
    image = s.scalar(select(Image).where(Image.name == body.image))
    if image is None:
        raise ApiError(
            422,
            "invalid_body",
            "request is invalid",
            [{"field": "image", "error": f"no image named {body.image!r}"}],
        )
    known = set(s.scalars(select(Network.name)).all())
    missing = [n.name for n in body.networks if n.name not in known]
    if missing:
        raise ApiError(
            422,
            "invalid_body",
            "request is invalid",
            [{"field": "networks", "error": f"unknown network {m!r}"} for m in missing],
        )
    spec = body.model_dump(mode="json", include=_SPEC_FIELDS)
    try:
        AppSpec.model_validate(
            {
                "uuid": app_uuid,
                "name": body.name,
                "kind": body.kind,
                **spec,
                "image": {**image_json(image), "url": "https://x/"},
            }
        )
    except ValidationError as exc:
        raise ApiError(422, "invalid_body", "request is invalid", validation_details(exc)) from exc
    return image, spec


@ops_api.post("/apps")
@require_role("operator")
@doc("Define an app", body=AppBody, status=201)
def create_app_def():  # type: ignore[no-untyped-def]
    body = parse(AppBody, request.get_json(silent=True))
    with svc().db.transaction() as s:
        if s.scalar(select(App).where(App.name == body.name)) is not None:
            raise ApiError(409, "conflict", f"an app named {body.name!r} exists")
        app_uuid = str(uuid.uuid4())
        image, spec = _validated_spec(s, body, app_uuid)
        app = App(
            uuid=app_uuid,
            name=body.name,
            kind=body.kind,
            image_id=image.id,
            spec=spec,
            label_selector=body.selector,
        )
        s.add(app)
        s.flush()
        out = app_json(app, image)
        audit(s, "app.create", body.name, after=out)
        changed(s)
    return jsonify(out), 201


@ops_api.put("/apps/<name>")
@require_role("operator")
@doc("Replace an app's definition (its uuid stays; nodes get the change)", body=AppBody)
def replace_app(name: str):  # type: ignore[no-untyped-def]
    body = parse(AppBody, request.get_json(silent=True))
    if body.name != name:
        raise ApiError(
            422,
            "invalid_body",
            "request is invalid",
            [{"field": "name", "error": f"must be {name!r} (rename is not supported)"}],
        )
    with svc().db.transaction() as s:
        app = find_app(s, name)
        if body.kind != app.kind:
            raise ApiError(
                422,
                "invalid_body",
                "request is invalid",
                [{"field": "kind", "error": f"cannot change kind of {name!r}"}],
            )
        before = app_json(app, s.get(Image, app.image_id))  # type: ignore[arg-type]
        image, spec = _validated_spec(s, body, app.uuid)
        app.image_id, app.spec, app.label_selector = image.id, spec, body.selector
        app.updated_at = utcnow()
        after = app_json(app, image)
        if after != before:
            audit(s, "app.update", name, before=before, after=after)
            changed(s)
    return jsonify(after)


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
        before = app_json(app, s.get(Image, app.image_id))  # type: ignore[arg-type]
        for inst in s.scalars(select(Assignment).where(Assignment.app_id == app.id)):
            s.delete(inst)
        s.delete(app)
        audit(s, "app.delete", name, before=before)
        changed(s)
    return jsonify({"deleted": name})
