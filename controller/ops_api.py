"""Operator API blueprint (``/api/v1/``): nodes, images, apps, assignments, audit.

Token auth with roles; every change is written to the audit log in the same
transaction as the change itself.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.auth import require_role
from controller.datastore import store_upload
from controller.db import App, Assignment, AuditEvent, Image, Node
from controller.errors import ApiError, validation_details
from controller.onboarding import claim_serial
from controller.services import Services
from protocol.desired_state import (
    Adapter,
    AppNetwork,
    AppSpec,
    ImageFormat,
    Name,
    Resources,
    Sha256Hex,
)
from protocol.messages import Serial

__all__ = ["ops_api"]

ops_api = Blueprint("ops_api", __name__, url_prefix="/api/v1")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimBody(_Body):
    serial: Serial


class ImageQuery(_Body):
    name: Name
    format: ImageFormat
    sha256: Sha256Hex


class AppBody(_Body):
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


class AssignBody(_Body):
    app: Name


def _svc() -> Services:
    return current_app.extensions["outpost"]


def _parse(model: type[_Body], data: Any) -> Any:
    if data is None:
        raise ApiError(422, "bad_request", "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid_body", "request is invalid", validation_details(exc)) from exc


def _audit(session: Session, action: str, target: str, **detail: Any) -> None:
    session.add(AuditEvent(actor=g.actor, action=action, target=target, detail=detail))


def _node(session: Session, key: str) -> Node:
    node = session.scalar(select(Node).where((Node.serial == key) | (Node.uuid == key)))
    if node is None:
        raise ApiError(404, "not_found", f"no node with serial or uuid {key!r}")
    return node


def _app(session: Session, name: str) -> App:
    app = session.scalar(select(App).where(App.name == name))
    if app is None:
        raise ApiError(404, "not_found", f"no app named {name!r}")
    return app


def _node_json(session: Session, node: Node) -> dict[str, Any]:
    apps = session.scalars(
        select(App.name)
        .join(Assignment, Assignment.app_id == App.id)
        .where(Assignment.node_id == node.id)
        .order_by(App.name)
    ).all()
    return {
        "serial": node.serial,
        "uuid": node.uuid,
        "state": node.state,
        "registered_at": node.registered_at and node.registered_at.isoformat() + "Z",
        "last_seen": node.last_seen and node.last_seen.isoformat() + "Z",
        "config_generation": node.config_generation,
        "assigned_apps": list(apps),
        "info": node.info,
        "inventory": node.inventory,
    }


@ops_api.post("/nodes/claim")
@require_role("operator")
def claim():  # type: ignore[no-untyped-def]
    body = _parse(ClaimBody, request.get_json(silent=True))
    with _svc().db.transaction() as session:
        node = claim_serial(session, body.serial)
        _audit(session, "node.claim", body.serial)
        out = _node_json(session, node)
    return jsonify(out), 201


@ops_api.get("/nodes")
@require_role("viewer")
def list_nodes():  # type: ignore[no-untyped-def]
    with _svc().db.transaction() as session:
        nodes = session.scalars(select(Node).order_by(Node.serial)).all()
        return jsonify({"nodes": [_node_json(session, n) for n in nodes]})


@ops_api.get("/nodes/<key>")
@require_role("viewer")
def show_node(key: str):  # type: ignore[no-untyped-def]
    with _svc().db.transaction() as session:
        return jsonify(_node_json(session, _node(session, key)))


@ops_api.post("/nodes/<key>/apps")
@require_role("operator")
def assign(key: str):  # type: ignore[no-untyped-def]
    body = _parse(AssignBody, request.get_json(silent=True))
    with _svc().db.transaction() as session:
        node, app = _node(session, key), _app(session, body.app)
        exists = session.scalar(
            select(Assignment).where(Assignment.node_id == node.id, Assignment.app_id == app.id)
        )
        if exists is None:
            session.add(Assignment(node_id=node.id, app_id=app.id))
            _audit(session, "app.assign", node.serial, app=app.name)
        session.flush()
        return jsonify(_node_json(session, node)), 201 if exists is None else 200


@ops_api.delete("/nodes/<key>/apps/<name>")
@require_role("operator")
def unassign(key: str, name: str):  # type: ignore[no-untyped-def]
    with _svc().db.transaction() as session:
        node, app = _node(session, key), _app(session, name)
        gone = session.execute(
            delete(Assignment).where(Assignment.node_id == node.id, Assignment.app_id == app.id)
        ).rowcount
        if not gone:
            raise ApiError(404, "not_found", f"app {name!r} is not assigned to {node.serial!r}")
        _audit(session, "app.unassign", node.serial, app=app.name)
        return jsonify(_node_json(session, node))


@ops_api.post("/images")
@require_role("operator")
def upload_image():  # type: ignore[no-untyped-def]
    svc = _svc()
    query = _parse(ImageQuery, request.args.to_dict())
    request.max_content_length = svc.settings.max_image_bytes
    with svc.db.transaction() as session:
        if session.scalar(select(Image).where(Image.name == query.name)) is not None:
            raise ApiError(409, "conflict", f"an image named {query.name!r} exists")
    size = store_upload(
        svc.settings.datastore_dir, request.stream, query.sha256, svc.settings.max_image_bytes
    )
    with svc.db.transaction() as session:
        image = Image(name=query.name, sha256=query.sha256, size=size, format=query.format)
        session.add(image)
        _audit(session, "image.add", query.name, sha256=query.sha256, size=size)
    return jsonify(_image_json(image)), 201


def _image_json(image: Image) -> dict[str, Any]:
    return {"name": image.name, "sha256": image.sha256, "size": image.size, "format": image.format}


@ops_api.get("/images")
@require_role("viewer")
def list_images():  # type: ignore[no-untyped-def]
    with _svc().db.transaction() as session:
        images = session.scalars(select(Image).order_by(Image.name)).all()
        return jsonify({"images": [_image_json(i) for i in images]})


def _app_json(app: App, image: Image) -> dict[str, Any]:
    return {"uuid": app.uuid, "name": app.name, "kind": app.kind, "image": image.name, **app.spec}


@ops_api.post("/apps")
@require_role("operator")
def create_app_def():  # type: ignore[no-untyped-def]
    body = _parse(AppBody, request.get_json(silent=True))
    with _svc().db.transaction() as session:
        image = session.scalar(select(Image).where(Image.name == body.image))
        if image is None:
            raise ApiError(
                422,
                "invalid_body",
                "request is invalid",
                [{"field": "image", "error": f"no image named {body.image!r}"}],
            )
        if session.scalar(select(App).where(App.name == body.name)) is not None:
            raise ApiError(409, "conflict", f"an app named {body.name!r} exists")
        app_uuid = str(uuid.uuid4())
        spec = body.model_dump(
            mode="json",
            include={
                "resources",
                "env",
                "command",
                "desired",
                "networks",
                "adapters",
                "start_delay_s",
            },
        )
        try:  # the wire schema is the final judge (env names, sizes, kind vs format)
            AppSpec.model_validate(
                {
                    "uuid": app_uuid,
                    "name": body.name,
                    "kind": body.kind,
                    **spec,
                    "image": {**_image_json(image), "url": "https://x/"},
                }
            )
        except ValidationError as exc:
            raise ApiError(
                422, "invalid_body", "request is invalid", validation_details(exc)
            ) from exc
        app = App(uuid=app_uuid, name=body.name, kind=body.kind, image_id=image.id, spec=spec)
        session.add(app)
        _audit(session, "app.create", body.name, kind=body.kind, image=image.name)
    return jsonify(_app_json(app, image)), 201


@ops_api.get("/apps")
@require_role("viewer")
def list_apps():  # type: ignore[no-untyped-def]
    with _svc().db.transaction() as session:
        rows = session.execute(
            select(App, Image).join(Image, Image.id == App.image_id).order_by(App.name)
        ).all()
        return jsonify({"apps": [_app_json(a, i) for a, i in rows]})


@ops_api.delete("/apps/<name>")
@require_role("operator")
def delete_app(name: str):  # type: ignore[no-untyped-def]
    with _svc().db.transaction() as session:
        app = _app(session, name)
        session.execute(delete(Assignment).where(Assignment.app_id == app.id))
        session.delete(app)
        _audit(session, "app.delete", name)
    return jsonify({"deleted": name})


@ops_api.get("/audit")
@require_role("viewer")
def audit():  # type: ignore[no-untyped-def]
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ApiError(422, "bad_request", "limit must be an integer from 1 to 1000")
    limit = int(raw)
    with _svc().db.transaction() as session:
        events = session.scalars(
            select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        ).all()
        return jsonify(
            {
                "events": [
                    {
                        "at": e.at.isoformat() + "Z",
                        "actor": e.actor,
                        "action": e.action,
                        "target": e.target,
                        "detail": e.detail,
                    }
                    for e in events
                ]
            }
        )
