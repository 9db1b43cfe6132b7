"""The JSON shapes of stored objects, as the API answers them and the audit log records
them (nodes, images, app definitions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.store.models import App, Assignment, Image, Node

__all__ = ["app_json", "image_json", "node_json"]


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
        "device_labels": node.device_labels or {},
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
