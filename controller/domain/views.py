"""The JSON shapes of stored objects, as the API answers them and the audit log records
them (nodes, images, app definitions)."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.store.models import App, Assignment, Image, Node, NodeTrust

__all__ = [
    "REDACTED",
    "app_json",
    "image_json",
    "keep_secret_user_data",
    "node_json",
    "redact_spec",
    "redact_user_data",
    "secret_placeholder",
    "wire_spec",
]

REDACTED = "<secret>"
"""What a secret env value shows as to viewers and in the audit log."""


def redact_spec(spec: dict[str, Any], reveal: bool = False) -> dict[str, Any]:
    """An app spec as shown: a secret ``user_data`` always as its placeholder, the
    ``secret_env`` values as :data:`REDACTED` unless ``reveal`` (an operator or admin
    caller; never for the audit log)."""
    out = redact_user_data(spec)
    secret = out.get("secret_env")
    if secret and not reveal:
        out = {**out, "secret_env": dict.fromkeys(secret, REDACTED)}
    return out


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
    """An app as the API, the UI and the audit log show it: secret user-data redacted,
    secret env values too unless ``reveal`` (see :func:`redact_spec`)."""
    spec = redact_spec(app.spec, reveal)
    return {
        "uuid": app.uuid,
        "name": app.name,
        "kind": app.kind,
        "image": image.name,
        "selector": app.label_selector,
        **spec,
    }


def secret_placeholder(text: str) -> str:
    """What is shown instead of a secret user-data: its size and a digest prefix (so an
    operator sees that it changed, never what it is)."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return f"<secret: {len(text.encode('utf-8'))} bytes, sha256 {digest}…>"


def redact_user_data(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with a secret ``user_data`` replaced by :func:`secret_placeholder` (the one
    place where app user-data is redacted for answers, pages and the audit log)."""
    if spec.get("user_data_secret") and isinstance(spec.get("user_data"), str):
        return {**spec, "user_data": secret_placeholder(spec["user_data"])}
    return spec


def keep_secret_user_data(body: Any, stored: dict[str, Any]) -> Any:
    """An app body whose ``user_data`` is the placeholder of the stored secret keeps the
    stored text (a definition read, edited elsewhere and sent back)."""
    old = stored.get("user_data")
    secret = stored.get("user_data_secret") and isinstance(old, str)
    if secret and body.user_data == secret_placeholder(str(old)):
        return body.model_copy(update={"user_data": old})
    return body
