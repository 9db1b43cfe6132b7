"""The rollout state machine, advanced by :func:`tick` (a thread calls it every second;
tests call it directly).

    progressing ─ring pending─▶ (approval?) awaiting_approval ─approve─▶ deploying
    deploying ─gate pass─▶ next ring pending … last ring passed ─▶ succeeded
    deploying ─gate fail─▶ rolled_back        (any) ─pause─▶ paused ─resume─▶ progressing

Deploying a ring pins the new version on its nodes (``AppPin``) and records the config
generation that carries it; nodes outside the rings keep the app's definition (the
previous version).  Success writes the new version into the app and drops the pins;
rollback drops the pins, so every node returns to the previous version.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.common import changed
from controller.domain.desired import current_desired_state, sync_label_assignments
from controller.domain.status import AppState, app_status, reported_generation
from controller.rollouts.gates import Progress, evaluate, observe
from controller.rollouts.plan import Candidate, RingBody, select_ring
from controller.services import Services
from controller.store.audit import audit
from controller.store.models import (
    ACTIVE,
    App,
    AppPin,
    Assignment,
    Image,
    Node,
    Rollout,
    RolloutNode,
    utcnow,
)
from protocol.desired_state import NodeSettings

__all__ = ["ACTIVE", "ENGINE_ACTOR", "finish_rollback", "tick"]

log = logging.getLogger(__name__)
ENGINE_ACTOR = "rollout-engine"


def tick(services: Services, now: float | None = None) -> int:
    """Advance every active rollout one step, as the engine; how many moved."""
    now = time.time() if now is None else now
    with services.db.transaction() as s:
        ids = s.scalars(
            select(Rollout.id).where(Rollout.state.in_(("progressing", "awaiting_approval")))
        ).all()
    moved = 0
    for rid in ids:
        with services.db.transaction() as s:
            stmt = select(Rollout).where(Rollout.id == rid)
            if s.get_bind().dialect.name != "sqlite":
                stmt = stmt.with_for_update(skip_locked=True)  # replicas: one ticks it
            rollout = s.scalar(stmt)
            if rollout is None or rollout.state not in ("progressing", "awaiting_approval"):
                continue
            moved += int(_step(services, s, rollout, now))
    return moved


def _note(r: Rollout, what: str) -> None:
    r.history = [*r.history, {"at": utcnow().isoformat() + "Z", "ring": r.ring, "what": what}]
    r.updated_at = utcnow()


def _audit(s: Session, r: Rollout, action: str, actor: str = ENGINE_ACTOR, **detail: Any) -> None:
    app = s.get(App, r.app_id)
    audit(s, actor, action, app.name if app else str(r.app_id), rollout=r.id, **detail)


def _step(services: Services, s: Session, r: Rollout, now: float) -> bool:
    ring = RingBody.model_validate(r.rings[r.ring])
    if r.ring_phase == "pending":
        if ring.approval and r.ring not in r.approved_rings:
            if r.state != "awaiting_approval":
                r.state = "awaiting_approval"
                _note(r, f"ring {_ring_name(r, r.ring)} waits for approval")
                return True
            return False
        r.state = "progressing"
        _deploy_ring(services, s, r, ring, now)
        return True
    rows = s.scalars(
        select(RolloutNode).where(RolloutNode.rollout_id == r.id, RolloutNode.ring == r.ring)
    ).all()
    app = s.get(App, r.app_id)
    assert app is not None
    stopped = r.to_version["spec"].get("desired") == "stopped"
    expected = AppState.HALTED if stopped else AppState.RUNNING
    progress = []
    for row in rows:
        node = s.get(Node, row.node_id)
        assert node is not None
        p = Progress(
            node.serial, row.generation, row.state, row.running_since, row.restarts, row.error
        )
        observe(p, reported_generation(node), app_status(node, app.uuid), now, expected)
        row.state, row.running_since, row.restarts, row.error = (
            p.state,
            p.running_since,
            p.restarts,
            p.error,
        )
        progress.append(p)
    result = evaluate(
        progress, ring.soak_s, ring.deadline_s, r.ring_started_at or now, now, expected
    )
    if result.verdict == "wait":
        return False
    if result.verdict == "fail":
        reason = f"ring {_ring_name(r, r.ring)} failed its health gate: {result.reason}"
        _note(r, reason)
        _audit(s, r, "rollout.rolled_back", reason=reason)
        finish_rollback(s, r, reason)
        log.warning("rollout %d of %s rolled back: %s", r.id, app.name, result.reason)
        return True
    _note(r, f"ring {_ring_name(r, r.ring)} passed: {result.reason}")
    _audit(s, r, "rollout.ring_passed", ring=r.ring)
    if r.ring + 1 >= len(r.rings):
        _succeed(s, r, app)
    else:
        r.ring += 1
        r.ring_phase = "pending"
    return True


def _ring_name(r: Rollout, index: int) -> str:
    return str(r.rings[index].get("name") or f"{index + 1}")


def _candidates(s: Session, app: App) -> list[Candidate]:
    for node in s.scalars(select(Node).where(Node.state == "registered")):
        sync_label_assignments(s, node)  # label-made instances exist before a config poll
    rows = s.execute(
        select(Node)
        .join(Assignment, Assignment.node_id == Node.id)
        .where(Assignment.app_id == app.id)
    ).scalars()
    return [Candidate(n.id, n.serial, dict(n.labels or {})) for n in rows]


def _deploy_ring(services: Services, s: Session, r: Rollout, ring: RingBody, now: float) -> None:
    app = s.get(App, r.app_id)
    assert app is not None
    candidates = _candidates(s, app)
    taken = set(s.scalars(select(RolloutNode.node_id).where(RolloutNode.rollout_id == r.id)))
    chosen = select_ring(ring, candidates, taken, len(candidates))
    defaults = NodeSettings(config_interval_s=services.settings.node_config_interval_s)
    image_id = int(r.to_version["image_id"])
    for c in chosen:
        node = s.get(Node, c.node_id)
        assert node is not None
        pin = s.scalar(select(AppPin).where(AppPin.node_id == node.id, AppPin.app_id == app.id))
        if pin is None:
            pin = AppPin(node_id=node.id, app_id=app.id, rollout_id=r.id)
            s.add(pin)
        pin.image_id, pin.spec, pin.rollout_id = image_id, r.to_version["spec"], r.id
        s.flush()
        generation = node.config_generation
        if node.uuid is not None:
            generation = current_desired_state(
                s, node, services.settings.public_url, defaults, services.download_key
            ).generation
        s.add(RolloutNode(rollout_id=r.id, node_id=node.id, ring=r.ring, generation=generation))
        changed(s, node)
    r.ring_phase, r.ring_started_at = "deploying", now
    names = ", ".join(c.serial for c in chosen[:20]) or "no nodes"
    _note(r, f"ring {_ring_name(r, r.ring)} deploying to {names}")
    _audit(s, r, "rollout.ring_started", ring=r.ring, nodes=[c.serial for c in chosen])
    s.flush()


def _succeed(s: Session, r: Rollout, app: App) -> None:
    app.image_id, app.spec = int(r.to_version["image_id"]), dict(r.to_version["spec"])
    app.updated_at = utcnow()
    for pin in s.scalars(select(AppPin).where(AppPin.rollout_id == r.id)):
        s.delete(pin)
    r.state, r.ring_phase = "succeeded", "passed"
    image = s.get(Image, app.image_id)
    _note(r, f"succeeded: {app.name} is now {image.name if image else '?'} everywhere")
    _audit(s, r, "rollout.succeeded")
    changed(s)


def finish_rollback(s: Session, r: Rollout, reason: str) -> None:
    """Drop the rollout's pins (every node returns to the previous version)."""
    for pin in s.scalars(select(AppPin).where(AppPin.rollout_id == r.id)):
        s.delete(pin)
    r.state, r.reason = "rolled_back", reason[:1024]
    r.updated_at = utcnow()
    changed(s)
