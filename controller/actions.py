"""The operator actions, once: the ``/api/v1`` routes and the web UI both call these.

Each runs inside the caller's transaction, validates with the shared bodies
(``controller.ops.bodies``), writes the audit entry, wakes the affected nodes'
long-polls and raises :class:`ApiError` with the API's codes and field details.
``g.actor`` must be set (``token:<name>`` for the API, ``user:<name>`` for the UI).
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.adapters import apps_on as adapter_apps_on
from controller.adapters import check_app_adapters, check_assignment, check_node_adapters
from controller.datastore import store_upload
from controller.db import App, Assignment, Image, Network, Node, PendingRegistration, utcnow
from controller.errors import ApiError, field_error, invalid, validation_details
from controller.gitops.ownership import refuse_if_git_owned
from controller.onboarding import claim_serial
from controller.ops.bodies import (
    SPEC_FIELDS,
    AppBody,
    ClaimBody,
    CommandBody,
    ImageQuery,
    ImageRegistration,
    NodePatch,
)
from controller.ops.common import (
    app_json,
    audit,
    changed,
    event,
    find_app,
    find_node,
    image_json,
    parse,
    svc,
)
from controller.rollouts.guard import refuse_if_rolling
from protocol.desired_state import AppSpec, NodeSettings

__all__ = [
    "MAX_CSV_BYTES",
    "MAX_CSV_ROWS",
    "CsvClaim",
    "assign",
    "claim",
    "claim_csv",
    "command",
    "create_app",
    "decide",
    "register_image",
    "replace_app",
    "unassign",
    "update_node",
    "upload_image",
    "validated_spec",
]

MAX_CSV_BYTES = 64 * 1024
MAX_CSV_ROWS = 1000


def validated_spec(s: Any, body: AppBody, app_uuid: str) -> tuple[Image, dict[str, Any]]:
    """Check the body against the wire schema (the final judge) and the database."""
    image = s.scalar(select(Image).where(Image.name == body.image))
    if image is None:
        raise field_error("image", f"no image named {body.image!r}")
    known = set(s.scalars(select(Network.name)).all())
    missing = [n.name for n in body.networks if n.name not in known]
    if missing:
        raise invalid([{"field": "networks", "error": f"unknown network {m!r}"} for m in missing])
    spec = body.model_dump(mode="json", include=SPEC_FIELDS)
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
        raise invalid(validation_details(exc)) from exc
    return image, spec


def claim(s: Session, serial: str) -> None:
    """``POST /nodes/claim``: claim a serial (idempotent) and drop its pending attempt."""
    body = parse(ClaimBody, {"serial": serial})
    claim_serial(s, body.serial)
    s.execute(delete(PendingRegistration).where(PendingRegistration.serial == body.serial))
    audit(s, "node.claim", body.serial, after={"serial": body.serial})


@dataclass
class CsvClaim:
    """The outcome of a CSV upload: nothing is claimed unless every row is valid."""

    serials: list[str] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    """(row number, value, error) per refused row."""


def claim_csv(s: Session, data: bytes) -> CsvClaim:
    """Claim every serial of a CSV (first column; a ``serial`` header row is skipped)."""
    out = CsvClaim()
    if len(data) > MAX_CSV_BYTES:
        out.errors.append((0, "", f"the file is larger than {MAX_CSV_BYTES // 1024} KiB"))
        return out
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        out.errors.append((0, "", "the file is not UTF-8 text"))
        return out
    seen: dict[str, int] = {}
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) > MAX_CSV_ROWS + 1:
        out.errors.append((0, "", f"more than {MAX_CSV_ROWS} rows"))
        return out
    for number, row in enumerate(rows, start=1):
        value = row[0].strip() if row else ""
        if not value or (number == 1 and value.lower() == "serial"):
            continue
        try:
            serial = ClaimBody.model_validate({"serial": value}).serial
        except ValidationError as exc:
            out.errors.append((number, value[:128], validation_details(exc)[0]["error"]))
            continue
        if serial in seen:
            out.errors.append((number, serial, f"repeats row {seen[serial]}"))
            continue
        seen[serial] = number
        out.serials.append(serial)
    if not out.serials and not out.errors:
        out.errors.append((0, "", "the file holds no serials"))
    if not out.errors:
        for serial in out.serials:
            claim(s, serial)
    return out


def decide(s: Session, serial: str, decision: str) -> None:
    """``POST /pending/<serial>/<decision>``: approve (claim) or reject a pending node."""
    if decision not in ("approve", "reject"):
        raise ApiError(404, "not_found", "decision must be approve or reject")
    row = s.scalar(select(PendingRegistration).where(PendingRegistration.serial == serial))
    if row is None:
        raise ApiError(404, "not_found", f"no pending node with serial {serial!r}")
    s.delete(row)
    if decision == "approve":
        claim_serial(s, serial)
    audit(s, f"node.{decision}", serial, device_cert_sha256=row.device_cert_sha256)


def command(s: Session, key: str, name: str, app: str | None = None) -> int:
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
    audit(s, f"node.{body.command}", node.serial, app=body.app, counter=counter)
    event(s, node, f"command.{body.command}", body.app or "")
    changed(s, node)
    return int(counter)


def assign(s: Session, key: str, app_name: str) -> bool:
    """``POST /nodes/<key>/apps``: run an app on a node; True when newly assigned."""
    node, app = find_node(s, key), find_app(s, app_name)
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
        audit(s, "app.assign", node.serial, app=app.name)
        changed(s, node)
    s.flush()
    return is_new


def unassign(s: Session, key: str, app_name: str) -> None:
    """``DELETE /nodes/<key>/apps/<name>``: stop running an explicitly assigned app."""
    node, app = find_node(s, key), find_app(s, app_name)
    gone = s.execute(
        delete(Assignment).where(
            Assignment.node_id == node.id,
            Assignment.app_id == app.id,
            Assignment.explicit.is_(True),
        )
    ).rowcount
    if not gone:
        raise ApiError(
            404, "not_found", f"app {app_name!r} is not explicitly assigned to {node.serial!r}"
        )
    audit(s, "app.unassign", node.serial, app=app.name)
    changed(s, node)


def update_node(
    s: Session,
    key: str,
    labels: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
) -> Node:
    """``PATCH /nodes/<key>``: replace the node's labels and/or its settings overrides."""
    body = parse(NodePatch, {"labels": labels, "settings": settings})
    if body.settings is not None:
        try:
            NodeSettings.model_validate(body.settings)
        except ValidationError as exc:
            details = validation_details(exc)
            raise invalid(
                [{**d, "field": f"settings.{d['field']}"} for d in details], "settings are invalid"
            ) from exc
    node = find_node(s, key)
    refuse_if_git_owned(s, "Node", node.serial)
    before = {"labels": node.labels, "settings": node.settings}
    if body.labels is not None:
        node.labels = dict(body.labels)
        check_node_adapters(node, adapter_apps_on(s, node))  # apps its new labels select
    if body.settings is not None:
        node.settings = dict(body.settings)
    audit(
        s,
        "node.update",
        node.serial,
        before=before,
        after={"labels": node.labels, "settings": node.settings},
    )
    changed(s, node)
    return node


def create_app(s: Session, data: dict[str, Any]) -> dict[str, Any]:
    """``POST /apps``: define an app (``data`` in the API's JSON shape)."""
    body = parse(AppBody, data)
    if s.scalar(select(App).where(App.name == body.name)) is not None:
        raise ApiError(
            409,
            "conflict",
            f"an app named {body.name!r} exists",
            [{"field": "name", "error": f"an app named {body.name!r} exists"}],
        )
    app_uuid = str(uuid.uuid4())
    image, spec = validated_spec(s, body, app_uuid)
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
    check_app_adapters(s, app)  # on the nodes its selector picks
    out = app_json(app, image)
    audit(s, "app.create", body.name, after=out)
    changed(s)
    return out


def replace_app(s: Session, name: str, data: dict[str, Any]) -> dict[str, Any]:
    """``PUT /apps/<name>``: replace a definition (name and kind stay)."""
    body = parse(AppBody, data)
    if body.name != name:
        raise field_error("name", f"must be {name!r} (rename is not supported)")
    app = find_app(s, name)
    refuse_if_git_owned(s, "App", name)
    refuse_if_rolling(s, app)
    if body.kind != app.kind:
        raise field_error("kind", f"cannot change kind of {name!r}")
    before = app_json(app, s.get(Image, app.image_id))  # type: ignore[arg-type]
    image, spec = validated_spec(s, body, app.uuid)
    app.image_id, app.spec, app.label_selector = image.id, spec, body.selector
    app.updated_at = utcnow()
    check_app_adapters(s, app)  # still fits on every node it runs on
    after = app_json(app, image)
    if after != before:
        audit(s, "app.update", name, before=before, after=after)
        changed(s)
    return after


def _refuse_duplicate(s: Session, name: str) -> None:
    if s.scalar(select(Image).where(Image.name == name)) is not None:
        raise ApiError(
            409,
            "conflict",
            f"an image named {name!r} exists",
            [{"field": "name", "error": f"an image named {name!r} exists"}],
        )


def register_image(s: Session, data: dict[str, Any]) -> dict[str, Any]:
    """``POST /images/register``: an image held in an external datastore."""
    body = parse(ImageRegistration, data)
    _refuse_duplicate(s, body.name)
    image = Image(
        name=body.name, sha256=body.sha256, size=body.size, format=body.format, url=body.url
    )
    s.add(image)
    audit(s, "image.register", body.name, after=image_json(image))
    return image_json(image)


def upload_image(data: dict[str, Any], stream: Any) -> dict[str, Any]:
    """``POST /images``: stream bytes into the datastore (sha256 verified, size capped)."""
    services = svc()
    query = parse(ImageQuery, data)
    with services.db.transaction() as s:
        _refuse_duplicate(s, query.name)
    size = store_upload(
        services.settings.datastore_dir, stream, query.sha256, services.settings.max_image_bytes
    )
    with services.db.transaction() as s:
        _refuse_duplicate(s, query.name)
        image = Image(name=query.name, sha256=query.sha256, size=size, format=query.format)
        s.add(image)
        audit(s, "image.add", query.name, after=image_json(image))
        return image_json(image)
