"""Helpers shared by the operator API modules: parsing, lookups, audit, JSON shapes."""

from __future__ import annotations

from typing import Any

from flask import g, request
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.config_notify import ALL
from controller.db import App, Assignment, AuditEvent, Event, Image, Node
from controller.errors import ApiError, invalid, validation_details
from controller.services import current_services

__all__ = [
    "Body",
    "app_json",
    "audit",
    "changed",
    "event",
    "find_app",
    "find_node",
    "image_json",
    "json_body",
    "node_json",
    "parse",
    "svc",
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


svc = current_services


def json_body() -> Any:
    """The request's JSON body; 422 when there is none."""
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(422, "bad_request", "body must be a JSON object")
    return data


def parse(model: type[BaseModel], data: Any) -> Any:
    if data is None:
        raise ApiError(422, "bad_request", "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(validation_details(exc)) from exc


def audit(
    session: Session,
    action: str,
    target: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    **detail: Any,
) -> None:
    """Record who did what to which object, with its state before and after."""
    session.add(
        AuditEvent(
            actor=g.actor, action=action, target=target, detail=detail, before=before, after=after
        )
    )


def changed(session: Session, node: Node | None = None) -> None:
    """Wake the long-polls of ``node`` (of every node when None) once this commits."""
    svc().notifier.notify(session, node.id if node is not None else ALL)


def event(session: Session, node: Node | None, kind: str, message: str = "") -> None:
    session.add(Event(node_id=node.id if node else None, kind=kind, message=message[:1024]))


def find_node(session: Session, key: str) -> Node:
    node = session.scalar(select(Node).where((Node.serial == key) | (Node.uuid == key)))
    if node is None:
        raise ApiError(404, "not_found", f"no node with serial or uuid {key!r}")
    return node


def find_app(session: Session, name: str) -> App:
    app = session.scalar(select(App).where(App.name == name))
    if app is None:
        raise ApiError(404, "not_found", f"no app named {name!r}")
    return app


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def node_json(session: Session, node: Node, full: bool = True) -> dict[str, Any]:
    rows = session.execute(
        select(App.name, Assignment)
        .join(Assignment, Assignment.app_id == App.id)
        .where(Assignment.node_id == node.id)
        .order_by(App.name)
    ).all()
    out: dict[str, Any] = {
        "serial": node.serial,
        "uuid": node.uuid,
        "state": node.state,
        "labels": node.labels or {},
        "registered_at": _iso(node.registered_at),
        "last_seen": _iso(node.last_seen),
        "config_generation": node.config_generation,
        "assigned_apps": [name for name, _ in rows],
        "instances": [
            {
                "app": name,
                "explicit": a.explicit,
                "restart_counter": a.restart_counter,
                "purge_counter": a.purge_counter,
            }
            for name, a in rows
        ],
        "info": node.info or {},
    }
    if full:
        out.update(
            settings=node.settings or {},
            reboot_counter=node.reboot_counter,
            inventory=node.inventory or {},
            metrics=node.metrics or {},
            metrics_at=_iso(node.metrics_at),
        )
    return out


def image_json(image: Image) -> dict[str, Any]:
    return {
        "name": image.name,
        "sha256": image.sha256,
        "size": image.size,
        "format": image.format,
        "url": image.url,
    }


def app_json(app: App, image: Image) -> dict[str, Any]:
    return {
        "uuid": app.uuid,
        "name": app.name,
        "kind": app.kind,
        "image": image.name,
        "selector": app.label_selector,
        **app.spec,
    }
