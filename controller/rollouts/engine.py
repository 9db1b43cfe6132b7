"""The rollout state machine, advanced by :func:`tick` (a thread calls it every second;
tests call it directly, with their own clock's ``now``).

    progressing ─ring pending─▶ (approval?) awaiting_approval ─approve─▶ deploying
    deploying: batch by batch ─batch gate pass─▶ next batch … last batch ─▶ next ring
    last ring passed ─▶ succeeded          a batch gate fails ─▶ rolled_back
    (any) ─pause─▶ paused ─resume─▶ progressing

Starting a ring picks its nodes (``plan.select_ring``), cuts them into batches
(``plan.split_batches``) and records each as a queued ``RolloutNode``; queued nodes get the
new image in their ``prefetch`` list at once (``domain.desired``).  Each step then, for the
current batch: folds the nodes' reports into the switched ones (``gates.observe``,
``gates.node_verdict``), switches the queued ones that may go (``switching.wait_reason``:
download, switch window, budgets; a switch pins the new version on the node, ``AppPin``,
and records the generation carrying it), and once every node of the batch is switched
applies the batch gate (``gates.evaluate`` with the ring's success threshold).  Nodes
outside the switched set keep the app's definition (the previous version).  Success writes
the new version into the app and drops the pins; rollback drops the pins, so every node
returns to the previous version.  Rows are written only when something about them changed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.common import changed
from controller.domain.desired import current_desired_state, sync_all_label_assignments
from controller.domain.labels import effective_labels, merged_labels
from controller.domain.site_policies import load_policies, resolve
from controller.domain.status import AppState, app_status, reported, reported_generation
from controller.rollouts.budgets import BudgetLedger, Member
from controller.rollouts.gates import GateResult, Progress, batch_gate, node_verdict, observe
from controller.rollouts.plan import BudgetBody, Candidate, RingBody, select_ring, split_batches
from controller.rollouts.switching import WindowCache, wait_reason
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
UPDATING = ("switched",)
"""Phases that count against a budget's ``max_updating`` (a failed node is no longer
updating: it counts against ``min_healthy``, as it is not healthy)."""


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


def ring_name(r: Rollout, index: int) -> str:
    return str(r.rings[index].get("name") or f"{index + 1}")


def _step(services: Services, s: Session, r: Rollout, now: float) -> bool:
    ring = RingBody.model_validate(r.rings[r.ring])
    if r.ring_phase == "pending":
        if ring.approval and r.ring not in r.approved_rings:
            if r.state != "awaiting_approval":
                r.state = "awaiting_approval"
                _note(r, f"ring {ring_name(r, r.ring)} waits for approval")
                return True
            return False
        r.state = "progressing"
        _start_ring(s, r, ring, now)
        _deploy(services, s, r, ring, now)
        return True
    return _deploy(services, s, r, ring, now)


def _deploy(services: Services, s: Session, r: Rollout, ring: RingBody, now: float) -> bool:
    """One step of the current batch: observe, switch who may go, apply the gate."""
    app = s.get(App, r.app_id)
    assert app is not None
    rows = s.scalars(
        select(RolloutNode).where(RolloutNode.rollout_id == r.id, RolloutNode.ring == r.ring)
    ).all()
    batch = [row for row in rows if row.batch == r.batch]
    nodes = {
        n.id: n for n in s.scalars(select(Node).where(Node.id.in_([b.node_id for b in batch])))
    }
    moved = _observe(r, ring, batch, nodes, app, now)
    moved |= _switch_ready(services, s, r, app, batch, nodes, now)
    result = _gate(r, ring, batch)  # queued nodes are pending: a lost batch fails at once
    if result.verdict == "wait":
        return moved
    label = f"ring {ring_name(r, r.ring)}" + (
        f" batch {r.batch + 1}" if ring.batches is not None else ""
    )
    if result.verdict == "fail":
        reason = f"{label} failed its health gate: {result.reason}"
        _note(r, reason)
        _audit(s, r, "rollout.rolled_back", reason=reason)
        finish_rollback(s, r, reason)
        log.warning("rollout %d of %s rolled back: %s", r.id, app.name, result.reason)
        return True
    _note(r, f"{label} passed: {result.reason}")
    if r.batch + 1 < max((row.batch for row in rows), default=0) + 1:
        r.batch += 1
        _audit(s, r, "rollout.batch_passed", ring=r.ring, batch=r.batch - 1)
        _deploy(services, s, r, ring, now)  # the next batch starts in the same step
        return True
    _audit(s, r, "rollout.ring_passed", ring=r.ring)
    if r.ring + 1 >= len(r.rings):
        _succeed(s, r, app)
    else:
        r.ring, r.batch, r.ring_phase = r.ring + 1, 0, "pending"
    return True


def _progress(r: Rollout, row: RolloutNode, node: Node, probed: bool) -> Progress:
    return Progress(
        node.serial,
        row.generation,
        row.state,
        row.running_since,
        row.restarts,
        row.error,
        row.switched_at,
        probed,
    )


def _expected(r: Rollout) -> AppState:
    return AppState.HALTED if r.to_version["spec"].get("desired") == "stopped" else AppState.RUNNING


def _observe(
    r: Rollout,
    ring: RingBody,
    batch: list[RolloutNode],
    nodes: dict[int, Node],
    app: App,
    now: float,
) -> bool:
    """Fold the switched nodes' reports in; decide each (healthy/failed) when it can be."""
    probed = r.to_version["spec"].get("health") is not None
    moved = False
    for row in batch:
        if row.phase != "switched":
            continue
        node = nodes[row.node_id]
        p = observe(
            _progress(r, row, node, probed),
            reported_generation(node),
            app_status(node, app.uuid),
            now,
            _expected(r),
        )
        row.state, row.running_since, row.restarts, row.error = (
            p.state, p.running_since, p.restarts, p.error,
        )  # fmt: skip
        verdict, reason = node_verdict(
            p, ring.soak_s, ring.deadline_s, r.ring_started_at or now, now, _expected(r)
        )
        if verdict != "pending":
            row.phase = verdict
            if reason:
                row.error = reason[:1024]
            moved = True
    return moved


def _gate(r: Rollout, ring: RingBody, batch: list[RolloutNode]) -> GateResult:
    """The batch gate from its nodes' phases (switched and queued ones are pending)."""
    verdicts = [
        (
            row.phase if row.phase in ("healthy", "failed") else "pending",
            row.error if row.phase == "failed" else "",
        )
        for row in batch
    ]
    threshold = ring.batches.success_threshold_pct if ring.batches else 100
    probed = r.to_version["spec"].get("health") is not None
    words = "healthy" if probed else str(_expected(r))
    return batch_gate(verdicts, threshold, f"{words} for {ring.soak_s:g} s")


def _members(s: Session, r: Rollout, app: App, ledger_needs_health: bool) -> list[Member]:
    """Every node of the app as the budgets count it (reports read only for min_healthy)."""
    updating = set(
        s.scalars(
            select(RolloutNode.node_id).where(
                RolloutNode.rollout_id == r.id, RolloutNode.phase.in_(UPDATING)
            )
        )
    )
    on_app = select(Assignment.node_id).where(Assignment.app_id == app.id)
    if not ledger_needs_health:
        rows = s.execute(
            select(Node.id, Node.labels, Node.device_labels).where(Node.id.in_(on_app))
        ).all()
        return [
            Member(i, merged_labels(labels, own), i in updating, False) for i, labels, own in rows
        ]
    out = []
    for node in s.scalars(select(Node).where(Node.id.in_(on_app))):
        status = app_status(node, app.uuid)
        healthy = (
            status is not None
            and status.state == AppState.RUNNING
            and (status.health is None or status.health.status == "healthy")
        )
        out.append(Member(node.id, effective_labels(node), node.id in updating, healthy))
    return out


def _switch_ready(
    services: Services,
    s: Session,
    r: Rollout,
    app: App,
    batch: list[RolloutNode],
    nodes: dict[int, Node],
    now: float,
) -> bool:
    """Switch the batch's queued nodes that may go now; note why the others wait."""
    queued = [row for row in batch if row.phase == "queued"]
    if not queued:
        return False
    budgets = [BudgetBody.model_validate(b) for b in r.budgets]
    ledger = None
    if budgets:
        needs_health = any(b.min_healthy is not None for b in budgets)
        ledger = BudgetLedger(budgets, _members(s, r, app, needs_health))
    policies = load_policies(s)
    windows = WindowCache()
    image = s.get(Image, int(r.to_version["image_id"]))
    assert image is not None
    moved = False
    for row in sorted(queued, key=lambda q: nodes[q.node_id].serial):
        node = nodes[row.node_id]
        labels = effective_labels(node)
        policy = resolve(policies, labels)
        why = wait_reason(
            node, labels, policy, reported(node.info), image.sha256, ledger, windows, now
        )
        if why:
            row.waiting = why
            continue
        _switch(services, s, r, app, row, node, now)
        if ledger is not None:
            ledger.switch(node.id, labels)
        moved = True
    return moved


def _switch(
    services: Services, s: Session, r: Rollout, app: App, row: RolloutNode, node: Node, now: float
) -> None:
    """Pin the new version on the node and record the generation that carries it."""
    pin = s.scalar(select(AppPin).where(AppPin.node_id == node.id, AppPin.app_id == app.id))
    if pin is None:
        pin = AppPin(node_id=node.id, app_id=app.id, rollout_id=r.id)
        s.add(pin)
    pin.image_id, pin.spec, pin.rollout_id = (
        int(r.to_version["image_id"]),
        r.to_version["spec"],
        r.id,
    )
    row.phase, row.switched_at, row.waiting = "switched", now, ""
    s.flush()
    if node.uuid is not None:
        defaults = NodeSettings(config_interval_s=services.settings.node_config_interval_s)
        row.generation = current_desired_state(
            s, node, services.settings.public_url, defaults, services.download_key
        ).generation
    else:
        row.generation = node.config_generation
    changed(s, node)


def _candidates(s: Session, app: App) -> list[Candidate]:
    sync_all_label_assignments(s)  # label-made instances exist before a config poll
    rows = s.execute(
        select(Node)
        .join(Assignment, Assignment.node_id == Node.id)
        .where(Assignment.app_id == app.id)
    ).scalars()
    return [Candidate(n.id, n.serial, effective_labels(n)) for n in rows]


def _start_ring(s: Session, r: Rollout, ring: RingBody, now: float) -> None:
    """Pick the ring's nodes, cut them into batches, queue them (they start pre-fetching)."""
    app = s.get(App, r.app_id)
    assert app is not None
    candidates = _candidates(s, app)
    taken = set(s.scalars(select(RolloutNode.node_id).where(RolloutNode.rollout_id == r.id)))
    chosen = select_ring(ring, candidates, taken, len(candidates))
    batches = split_batches(chosen, ring.batches)
    for index, members in enumerate(batches):
        for c in members:
            s.add(
                RolloutNode(
                    rollout_id=r.id, node_id=c.node_id, ring=r.ring, batch=index, phase="queued"
                )
            )
            node = s.get(Node, c.node_id)
            if node is not None:
                changed(s, node)  # its prefetch list now names the new image
    r.ring_phase, r.ring_started_at, r.batch = "deploying", now, 0
    names = ", ".join(c.serial for c in chosen[:20]) or "no nodes"
    more = f" in {len(batches)} batches" if ring.batches is not None and batches else ""
    _note(r, f"ring {ring_name(r, r.ring)} deploying to {names}{more}")
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
