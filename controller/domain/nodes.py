"""Node actions: labels and settings, commands (reboot, app restart/purge), assignments."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.adapters import apps_on as adapter_apps_on
from controller.domain.adapters import check_assignment, check_node_adapters
from controller.domain.bodies import CommandBody, NodePatch
from controller.domain.common import changed, parse
from controller.domain.labels import refuse_device_keys
from controller.domain.ownership import refuse_if_git_owned
from controller.errors import ApiError, field_error, invalid, validation_details
from controller.store.audit import audit, event
from controller.store.lookup import find_app, find_node
from controller.store.models import Assignment, Node, NodeTrust
from protocol.desired_state import NodeSettings

__all__ = ["KEEP_AGENT", "assign", "command", "delete_node", "unassign", "update_node"]

KEEP_AGENT = object()
"""``update_node(agent=…)`` default: the node's agent release target stays as it is."""


def command(s: Session, actor: str, key: str, name: str, app: str | None = None) -> int:
    """``POST /nodes/<key>/commands``: raise the reboot/restart/purge counter; returns it."""
    body = parse(CommandBody, {"command": name, "app": app or None})
    node = find_node(s, key)
    if body.command == "reboot":
        node.reboot_counter += 1
        counter = node.reboot_counter
    else:
        if body.app is None:
            raise field_error("app", f"{body.command} needs an app")
        found = find_app(s, body.app)
        inst = s.scalar(
            select(Assignment).where(Assignment.node_id == node.id, Assignment.app_id == found.id)
        )
        if inst is None:
            raise ApiError(404, "not_found", f"{body.app!r} does not run on {node.serial!r}")
        attr = f"{body.command}_counter"
        setattr(inst, attr, getattr(inst, attr) + 1)
        counter = getattr(inst, attr)
    audit(s, actor, f"node.{body.command}", node.serial, app=body.app, counter=counter)
    event(s, node, f"command.{body.command}", body.app or "")
    changed(s, node)
    return int(counter)


def assign(s: Session, actor: str, key: str, app_name: str) -> bool:
    """``POST /nodes/<key>/apps``: run an app on a node; True when newly assigned (409 for
    a revoked node: it gets no config any more)."""
    node, app = find_node(s, key), find_app(s, app_name)
    trust = s.get(NodeTrust, node.id)
    if trust is not None and trust.revoked_at is not None:
        raise ApiError(409, "revoked", f"node {node.serial!r} is revoked: it runs nothing new")
    inst = s.scalar(
        select(Assignment).where(Assignment.node_id == node.id, Assignment.app_id == app.id)
    )
    is_new = inst is None or not inst.explicit
    if inst is None:
        check_assignment(s, node, app)  # PCI adapters: present, whole group, not shared
        s.add(Assignment(node_id=node.id, app_id=app.id))
    else:
        inst.explicit = True
    if is_new:
        audit(s, actor, "app.assign", node.serial, app=app.name)
        changed(s, node)
    s.flush()
    return is_new


def unassign(s: Session, actor: str, key: str, app_name: str) -> None:
    """``DELETE /nodes/<key>/apps/<name>``: stop running an explicitly assigned app."""
    node, app = find_node(s, key), find_app(s, app_name)
    inst = s.scalar(
        select(Assignment).where(
            Assignment.node_id == node.id,
            Assignment.app_id == app.id,
            Assignment.explicit.is_(True),
        )
    )
    if inst is None:
        raise ApiError(
            404, "not_found", f"app {app_name!r} is not explicitly assigned to {node.serial!r}"
        )
    s.delete(inst)
    audit(s, actor, "app.unassign", node.serial, app=app.name)
    changed(s, node)


DEBUG_SETTINGS = ("debug_ssh", "ssh_authorized_keys", "debug_console")
"""Settings that open a way into the node: only an admin (or the admin-set git source)
changes them."""


def _debug_of(settings: dict[str, Any] | None) -> dict[str, Any]:
    return {k: (settings or {}).get(k) for k in DEBUG_SETTINGS if (settings or {}).get(k)}


def update_node(
    s: Session,
    actor: str,
    key: str,
    labels: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    *,
    agent: dict[str, Any] | object | None = KEEP_AGENT,
    may_debug: bool = False,
) -> Node:
    """``PATCH /nodes/<key>``: replace the node's labels and/or its settings overrides.

    ``settings`` are the operator's (:class:`OperatorSettings`: no ``agent``); the node's
    agent release target stays unless ``agent`` is given (only
    :func:`controller.domain.agent_releases.set_node_release` does, after its checks).
    Changing debug access (SSH, its keys, the console login) needs ``may_debug`` (the
    caller is an admin): 403 otherwise."""
    body = parse(NodePatch, {"labels": labels, "settings": settings})
    refuse_device_keys(body.labels)
    node = find_node(s, key)
    new_settings = None
    if body.settings is not None or agent is not KEEP_AGENT:
        stored = dict(node.settings or {})
        kept = stored.pop("agent", None)
        target = kept if agent is KEEP_AGENT else agent
        new_settings = (
            body.settings.model_dump(mode="json", exclude_unset=True)
            if body.settings is not None
            else stored
        )
        if target is not None:
            new_settings["agent"] = target
        try:
            NodeSettings.model_validate(new_settings)
        except ValidationError as exc:
            details = validation_details(exc)
            raise invalid(
                [{**d, "field": f"settings.{d['field']}"} for d in details], "settings are invalid"
            ) from exc
    refuse_if_git_owned(s, actor, "Node", node.serial)
    if (
        new_settings is not None
        and _debug_of(new_settings) != _debug_of(node.settings)
        and not may_debug
    ):
        raise ApiError(
            403,
            "forbidden",
            "debug access (debug_ssh, ssh_authorized_keys, debug_console) is"
            " changed by an admin only",
        )
    before = {"labels": node.labels, "settings": node.settings}
    if body.labels is not None:
        node.labels = dict(body.labels)
        check_node_adapters(node, adapter_apps_on(s, node))  # apps its new labels select
    if new_settings is not None:
        node.settings = new_settings
    audit(
        s,
        actor,
        "node.update",
        node.serial,
        before=before,
        after={"labels": node.labels, "settings": node.settings},
    )
    changed(s, node)
    return node


def delete_node(s: Session, actor: str, key: str) -> None:
    """``DELETE /nodes/<key>``: forget a claimed node that never registered."""
    node = find_node(s, key)
    if node.state != "claimed":
        raise ApiError(409, "conflict", f"node {node.serial!r} is {node.state}; revoke it")
    audit(s, actor, "node.delete", node.serial, before={"serial": node.serial})
    s.delete(node)
