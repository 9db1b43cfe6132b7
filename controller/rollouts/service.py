"""Operator actions on rollouts (the API, the CLI and the UI call these; all audited).

start(s, actor, data)   validate the new version like PUT /apps/<name>; refuse a
                        second active rollout of the app or a git-owned app
approve / pause / resume / rollback(s, actor, id)
rollout_json(s, r)      the rollout with per-ring and per-node progress
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.apps import validated_spec
from controller.domain.bodies import SPEC_FIELDS
from controller.domain.common import parse
from controller.domain.ownership import GIT_ACTOR_PREFIX, owner
from controller.domain.rollout_guard import refuse_if_rolling
from controller.domain.views import app_json, redact_spec
from controller.errors import ApiError, conflict
from controller.rollouts.engine import finish_rollback
from controller.rollouts.plan import RolloutBody
from controller.rollouts.view import rollout_view
from controller.store.audit import audit
from controller.store.lookup import find_app
from controller.store.models import ACTIVE, App, Image, Rollout, RolloutNode

__all__ = [
    "approve",
    "find_rollout",
    "pause",
    "refuse_if_rolling",
    "resume",
    "rollback",
    "rollout_json",
    "start",
]


def _version(app_image: Image, spec: dict[str, Any]) -> dict[str, Any]:
    return {"image": app_image.name, "image_id": app_image.id, "spec": spec}


def start(s: Session, actor: str, data: Any) -> Rollout:
    body = parse(RolloutBody, data)
    app = find_app(s, body.app.name)
    if owner(s, "App", app.name) is not None and not actor.startswith(GIT_ACTOR_PREFIX):
        raise ApiError(
            409,
            "owned_by_git",
            f"app {app.name!r} is owned by the git source: commit the new version there",
        )
    refuse_if_rolling(s, app)
    if body.app.kind != app.kind:
        raise conflict("app.kind", f"cannot change kind of {app.name!r}")
    if body.app.selector != app.label_selector:
        raise conflict("app.selector", "a rollout changes image and spec, not the selector")
    image, spec = validated_spec(s, body.app, app.uuid)
    old_image = s.get(Image, app.image_id)
    assert old_image is not None
    if image.id == app.image_id and spec == app.spec:
        raise conflict("app", "the new version is the version in force")
    r = Rollout(
        app_id=app.id,
        state="progressing",
        rings=[ring.model_dump(mode="json") for ring in body.rings],
        budgets=[b.model_dump(mode="json") for b in body.budgets],
        from_version=_version(old_image, dict(app.spec)),
        to_version=_version(image, spec),
        created_by=actor,
        history=[],
    )
    s.add(r)
    s.flush()
    audit(
        s,
        actor,
        "rollout.start",
        app.name,
        before=app_json(app, old_image),
        after={
            **app_json(app, image),
            **redact_spec({k: spec[k] for k in SPEC_FIELDS if k in spec}),
        },
        rollout=r.id,
        rings=r.rings,
    )
    return r


def find_rollout(s: Session, rid: int) -> Rollout:
    r = s.get(Rollout, rid)
    if r is None:
        raise ApiError(404, "not_found", f"no rollout {rid}")
    return r


def _app_name(s: Session, r: Rollout) -> str:
    app = s.get(App, r.app_id)
    return app.name if app else str(r.app_id)


def approve(s: Session, actor: str, rid: int, ring: int | None = None) -> Rollout:
    """Approve the ring waiting for approval (or ``ring``, ahead of time)."""
    r = find_rollout(s, rid)
    if r.state not in ACTIVE:
        raise ApiError(409, "conflict", f"rollout {rid} is {r.state}")
    index = r.ring if ring is None else ring
    if not 0 <= index < len(r.rings):
        raise conflict("ring", f"rollout {rid} has rings 0…{len(r.rings) - 1}")
    if not r.rings[index].get("approval"):
        raise ApiError(409, "conflict", f"ring {index} of rollout {rid} needs no approval")
    if index in r.approved_rings:
        return r
    r.approved_rings = [*r.approved_rings, index]
    if r.state == "awaiting_approval" and index == r.ring:
        r.state = "progressing"
    r.history = [*r.history, {"at": _now(), "ring": index, "what": f"approved by {actor}"}]
    audit(s, actor, "rollout.approve", _app_name(s, r), rollout=rid, ring=index)
    return r


def pause(s: Session, actor: str, rid: int) -> Rollout:
    r = find_rollout(s, rid)
    if r.state not in ("progressing", "awaiting_approval"):
        raise ApiError(409, "conflict", f"rollout {rid} is {r.state}; only a running one pauses")
    r.reason = r.state  # resumed into this state
    r.state = "paused"
    r.history = [*r.history, {"at": _now(), "ring": r.ring, "what": f"paused by {actor}"}]
    audit(s, actor, "rollout.pause", _app_name(s, r), rollout=rid)
    return r


def resume(s: Session, actor: str, rid: int) -> Rollout:
    r = find_rollout(s, rid)
    if r.state != "paused":
        raise ApiError(409, "conflict", f"rollout {rid} is {r.state}, not paused")
    r.state = r.reason if r.reason in ("progressing", "awaiting_approval") else "progressing"
    r.reason = ""
    if r.ring_phase == "deploying":
        # the health window restarts: time paused is not time observed
        import time

        r.ring_started_at = time.time()
        for row in s.scalars(
            select(RolloutNode).where(RolloutNode.rollout_id == r.id, RolloutNode.ring == r.ring)
        ):
            row.running_since = None
            if row.phase == "switched":
                row.switched_at = r.ring_started_at
    r.history = [*r.history, {"at": _now(), "ring": r.ring, "what": f"resumed by {actor}"}]
    audit(s, actor, "rollout.resume", _app_name(s, r), rollout=rid)
    return r


def rollback(s: Session, actor: str, rid: int) -> Rollout:
    r = find_rollout(s, rid)
    if r.state not in ACTIVE:
        raise ApiError(409, "conflict", f"rollout {rid} is {r.state}")
    reason = f"rolled back by {actor}"
    r.history = [*r.history, {"at": _now(), "ring": r.ring, "what": reason}]
    audit(s, actor, "rollout.rollback", _app_name(s, r), rollout=rid)
    finish_rollback(s, r, reason)
    return r


def _now() -> str:
    from controller.store.models import utcnow

    return utcnow().isoformat() + "Z"


def rollout_json(
    s: Session, r: Rollout, full: bool = True, now: float | None = None
) -> dict[str, Any]:
    """The rollout as shown (``controller.rollouts.view``)."""
    return rollout_view(s, r, full, now)
