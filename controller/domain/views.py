"""The JSON shapes of stored objects, as the API answers them and the audit log records
them (nodes, images, app definitions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.store.models import App, Assignment, Image, Node, NodeTrust

__all__ = ["REDACTED", "app_json", "image_json", "node_json", "redact_spec", "wire_spec"]

REDACTED = "<secret>"
"""What a secret env value shows as to viewers and in the audit log."""


def redact_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """An app spec with its ``secret_env`` values replaced by :data:`REDACTED`."""
    secret = spec.get("secret_env")
    if not secret:
        return spec
    return {**spec, "secret_env": dict.fromkeys(secret, REDACTED)}


def wire_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored app spec as the node's ``AppSpec`` fields: secret env joins ``env``."""
    out = dict(spec)
    secret = out.pop("secret_env", None) or {}
    if secret:
        out["env"] = {**(out.get("env") or {}), **secret}
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def node_json(session: Session, node: Node, full: bool = True) -> dict[str, Any]:
    """A node as the API shows it; ``state``: claimed | registered | revoked."""
    rows = session.execute(
        select(App.name, Assignment)
        .join(Assignment, Assignment.app_id == App.id)
        .where(Assignment.node_id == node.id)
        .order_by(App.name)
    ).all()
    trust = session.get(NodeTrust, node.id)
    revoked = trust is not None and trust.revoked_at is not None
    out: dict[str, Any] = {
        "serial": node.serial,
        "uuid": node.uuid,
        "state": "revoked" if revoked else node.state,
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


def app_json(app: App, image: Image, reveal: bool = False) -> dict[str, Any]:
    """An app definition; secret env values redacted unless ``reveal`` (an operator or
    admin caller; never for the audit log)."""
    spec = app.spec if reveal else redact_spec(app.spec)
    return {
        "uuid": app.uuid,
        "name": app.name,
        "kind": app.kind,
        "image": image.name,
        "selector": app.label_selector,
        **spec,
    }
