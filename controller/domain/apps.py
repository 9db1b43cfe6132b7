"""App definitions: create, replace and delete, checked against the wire schema (the final
judge), the stored images and networks, PCI adapters, git ownership and rollouts."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.adapters import check_app_adapters
from controller.domain.bodies import SPEC_FIELDS, AppBody
from controller.domain.common import changed, parse
from controller.domain.ownership import refuse_if_git_owned
from controller.domain.rollout_guard import refuse_if_rolling
from controller.domain.views import app_json, image_json, keep_secret_user_data, wire_spec
from controller.errors import ApiError, conflict, validation_details
from controller.store.audit import audit
from controller.store.lookup import find_app
from controller.store.models import App, Assignment, Image, Network, utcnow
from protocol.desired_state import AppSpec

__all__ = ["create_app", "delete_app", "replace_app", "validated_spec"]


def validated_spec(s: Any, body: AppBody, app_uuid: str) -> tuple[Image, dict[str, Any]]:
    """Check the body against the wire schema (the final judge) and the database."""
    image = s.scalar(select(Image).where(Image.name == body.image))
    if image is None:
        raise conflict("image", f"no image named {body.image!r}")
    known = set(s.scalars(select(Network.name)).all())
    missing = [n.name for n in body.networks if n.name not in known]
    if missing:
        message = f"unknown network {missing[0]!r}"
        raise ApiError(409, "conflict", message, [{"field": "networks", "error": message}])
    spec = body.model_dump(mode="json", include=SPEC_FIELDS)
    if not spec.get("secret_env"):
        spec.pop("secret_env", None)  # stored only when used: older specs compare equal
    if spec.get("health") is None:
        spec.pop("health", None)  # stored apps without a probe stay as they were
    for name, default in (("user_data", None), ("user_data_secret", False)):
        if spec.get(name, default) == default:  # stored only when set: older apps look the same
            del spec[name]
    try:
        AppSpec.model_validate(
            {
                "uuid": app_uuid,
                "name": body.name,
                "kind": body.kind,
                **wire_spec(spec),
                "image": {**image_json(image), "url": "https://x/"},
            }
        )
    except ValidationError as exc:  # the image's format does not suit the kind, …
        raise ApiError(
            409, "conflict", "the app does not fit its image", validation_details(exc)
        ) from exc
    return image, spec


def create_app(s: Session, actor: str, data: dict[str, Any]) -> dict[str, Any]:
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
    audit(s, actor, "app.create", body.name, after=out)
    changed(s)
    return out


def replace_app(s: Session, actor: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    """``PUT /apps/<name>``: replace a definition (name and kind stay).

    A secret ``user_data`` sent back as shown (its placeholder) keeps the stored text."""
    body = parse(AppBody, data)
    if body.name != name:
        raise conflict("name", f"must be {name!r} (rename is not supported)")
    app = find_app(s, name)
    refuse_if_git_owned(s, actor, "App", name)
    refuse_if_rolling(s, app)
    if body.kind != app.kind:
        raise conflict("kind", f"cannot change kind of {name!r}")
    old_image = s.get(Image, app.image_id)
    assert old_image is not None
    before, before_all = app_json(app, old_image), app_json(app, old_image, reveal=True)
    body = keep_secret_user_data(body, app.spec)
    image, spec = validated_spec(s, body, app.uuid)
    app.image_id, app.spec, app.label_selector = image.id, spec, body.selector
    app.updated_at = utcnow()
    check_app_adapters(s, app)  # still fits on every node it runs on
    after = app_json(app, image)
    if app_json(app, image, reveal=True) != before_all:
        secrets = _secret_changes(before_all, app.spec)
        audit(s, actor, "app.update", name, before=before, after=after, **secrets)
        changed(s)
    return after


def _secret_changes(before: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Which secret env names were set, changed or removed (names only, never values)."""
    old, new = before.get("secret_env") or {}, spec.get("secret_env") or {}
    changed_names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return {"secret_env_changed": changed_names} if changed_names else {}


def delete_app(s: Session, actor: str, name: str) -> None:
    """``DELETE /apps/<name>``: every node stops and removes the app."""
    app = find_app(s, name)
    refuse_if_git_owned(s, actor, "App", name)
    refuse_if_rolling(s, app)
    before = app_json(app, s.get(Image, app.image_id))  # type: ignore[arg-type]
    for inst in s.scalars(select(Assignment).where(Assignment.app_id == app.id)):
        s.delete(inst)
    s.flush()  # the assignments first: deleting the app first, its FK cascade took them
    s.delete(app)
    audit(s, actor, "app.delete", name, before=before)
    changed(s)
