"""A rollout as the API, CLI and UI show it: rings, batches, every node's progress and
what it waits for, its download, and when the rollout is expected to finish.

Per node: the engine's phase (queued, switched, healthy, failed), the app's state, health
and restarts as last observed, and for a queued node why it waits, in words with the moving
details added here (``pre-fetching the new image: 40 % at 1.2 MB/s, done ~12:03:10 UTC``,
``waiting for its switch window 0 3 * * * (Europe/Berlin, 60 min): opens …``, the budget
that holds it, or the batch it belongs to).  ``expected_completion`` comes from
:func:`controller.rollouts.eta.expected_completion`; nodes of rings not started yet are
predicted with the ring's own selection rules.  ``now`` is injectable (tests).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.labels import effective_labels
from controller.domain.site_policies import (
    LoadedPolicy,
    NodePolicy,
    group_members,
    load_policies,
    resolve,
)
from controller.domain.status import app_status, reported
from controller.domain.views import redact_spec
from controller.rollouts.eta import NodeEta, RingEta, expected_completion, switch_seconds
from controller.rollouts.plan import BudgetBody, Candidate, RingBody, select_ring, split_batches
from controller.rollouts.switching import (
    WAIT_DOWNLOAD,
    WAIT_DOWNLOAD_WINDOW,
    WAIT_SWITCH_WINDOW,
    prefetch_of,
)
from controller.store.models import App, Assignment, Image, Node, Rollout, RolloutNode
from protocol.windows import Window

__all__ = ["rollout_view"]


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rate(bps: float) -> str:
    for unit, size in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bps >= size:
            return f"{bps / size:.1f} {unit}"
    return f"{bps:.0f} B/s"


class _Ctx:
    """What the view reads once per rollout."""

    def __init__(self, s: Session, r: Rollout, now: float) -> None:
        self.s, self.r, self.now = s, r, now
        self.policies: list[LoadedPolicy] = load_policies(s)
        self.image = s.get(Image, int(r.to_version["image_id"]))
        self.budgets = [BudgetBody.model_validate(b) for b in r.budgets]
        self._members: dict[tuple[Any, ...], int] = {}

    def policy(self, node: Node) -> NodePolicy:
        return resolve(self.policies, effective_labels(node))

    def share(self, policy: NodePolicy) -> float | None:
        key = (policy.sources.get("download_rate_bps"), policy.group)
        if key not in self._members:
            self._members[key] = group_members(self.s, self.policies, policy)
        return policy.share_bps(self._members[key])

    def download(self, node: Node, policy: NodePolicy) -> dict[str, Any] | None:
        """The pre-fetch as reported, with the seconds left at the measured rate or share."""
        if self.image is None:
            return None
        report = prefetch_of(reported(node.info), self.image.sha256)
        total = self.image.size
        done = report.done_bytes if report else 0
        state = report.state if report else "not reported"
        rate = (report.rate_bps if report else None) or self.share(policy)
        left = 0.0 if state == "done" else (total - done) / rate if rate else None
        start = self.now
        if state != "done" and policy.download_window is not None:
            wstate = policy.download_window.state(self.now)
            if not wstate.open and wstate.opens_at is not None:
                start = wstate.opens_at
        return {
            "state": state,
            "done_bytes": done,
            "total_bytes": total,
            "rate_bps": report.rate_bps if report else None,
            "share_bps": self.share(policy),
            "expected_done_at": start + left if left is not None else None,
            "error": report.error if report else "",
        }


def _window_words(what: str, window: Window | None, now: float) -> str:
    if window is None:
        return what
    state = window.state(now)
    return f"{what} {window.describe()}: opens {_when(state.opens_at)}"


def _waiting(row: RolloutNode, r: Rollout, policy: NodePolicy, dl: dict[str, Any] | None,
             now: float) -> str:  # fmt: skip
    if row.phase != "queued":
        return ""
    if row.ring == r.ring and row.batch > r.batch:
        return f"batch {row.batch + 1}: after batch {row.batch} passes"
    why = row.waiting
    if why == WAIT_DOWNLOAD and dl is not None:
        pct = dl["done_bytes"] * 100 // max(dl["total_bytes"], 1)
        rate = f" at {_rate(dl['rate_bps'])}" if dl["rate_bps"] else ""
        done = f", done ~{_when(dl['expected_done_at'])}" if dl["expected_done_at"] else ""
        return f"{why}: {pct} %{rate}{done}"
    if why == WAIT_DOWNLOAD_WINDOW:
        return _window_words(why, policy.download_window, now)
    if why == WAIT_SWITCH_WINDOW:
        return _window_words(why, policy.switch_window, now)
    return why or "its turn (next step)"


def _node_json(ctx: _Ctx, row: RolloutNode, node: Node, app_uuid: str) -> dict[str, Any]:
    policy = ctx.policy(node)
    dl = ctx.download(node, policy) if row.phase == "queued" else None
    status = app_status(node, app_uuid)
    return {
        "serial": node.serial,
        "batch": row.batch,
        "phase": row.phase,
        "state": row.state,
        "generation": row.generation,
        "switched_at": row.switched_at,
        "running_since": row.running_since,
        "restarts": row.restarts,
        "health": status.health.status if status and status.health else None,
        "error": row.error,
        "waiting": _waiting(row, ctx.r, policy, dl, ctx.now),
        "download": dl,
    }


def _eta_node(ctx: _Ctx, node: Node, batch: int, row: RolloutNode | None) -> NodeEta:
    policy = ctx.policy(node)
    labels = effective_labels(node)
    groups = [tuple(str(labels.get(k, "")) for k in b.group_by) for b in ctx.budgets]
    eta = NodeEta(node.id, batch, groups=groups, switch_window=policy.switch_window)
    if row is not None:
        eta.phase, eta.switched_at, eta.running_since = (
            row.phase, row.switched_at, row.running_since,
        )  # fmt: skip
    needs_fetch = policy.download_window is not None or policy.download_rate_bps is not None
    if not needs_fetch:
        eta.image_ready_at = ctx.now if row is not None else None
        return eta
    if row is not None:
        dl = ctx.download(node, policy)
        eta.image_ready_at = (dl or {}).get("expected_done_at") or ctx.now
    else:
        share = ctx.share(policy)
        size = ctx.image.size if ctx.image else 0
        eta.download_s = size / share if share else 0.0
        eta.download_window = policy.download_window
    return eta


def _candidates(s: Session, app_id: int) -> list[tuple[Candidate, Node]]:
    rows = s.scalars(
        select(Node).join(Assignment, Assignment.node_id == Node.id)
        .where(Assignment.app_id == app_id)
    ).all()  # fmt: skip
    return [(Candidate(n.id, n.serial, effective_labels(n)), n) for n in rows]


def _expected(ctx: _Ctx, rows: list[tuple[RolloutNode, Node]]) -> float | None:
    r = ctx.r
    if r.state not in ("progressing", "awaiting_approval"):
        return None
    rings: list[RingEta] = []
    by_ring: dict[int, list[tuple[RolloutNode, Node]]] = {}
    for row, node in rows:
        by_ring.setdefault(row.ring, []).append((row, node))
    candidates = _candidates(ctx.s, r.app_id)
    nodes_by_id = {c.node_id: n for c, n in candidates}
    taken = {row.node_id for row, _ in rows}
    counts: list[dict[tuple[str, ...], int]] = [{} for _ in ctx.budgets]
    for c, _ in candidates:
        for i, b in enumerate(ctx.budgets):
            key = tuple(str(c.labels.get(k, "")) for k in b.group_by)
            counts[i][key] = counts[i].get(key, 0) + 1
    for index in range(r.ring, len(r.rings)):
        ring = RingBody.model_validate(r.rings[index])
        if index == r.ring and r.ring_phase != "pending":
            etas = [_eta_node(ctx, n, row.batch, row) for row, n in by_ring.get(index, [])]
        else:
            chosen = select_ring(ring, [c for c, _ in candidates], taken, len(candidates))
            taken |= {c.node_id for c in chosen}
            etas = [
                _eta_node(ctx, nodes_by_id[c.node_id], b, None)
                for b, members in enumerate(split_batches(chosen, ring.batches))
                for c in members
            ]
        rings.append(RingEta(ring.soak_s, etas))
    switch_s = switch_seconds((row.switched_at, row.running_since) for row, _ in rows)
    return expected_completion(ctx.now, rings, r.batch, ctx.budgets, counts, switch_s)


def _ring_status(r: Rollout, i: int) -> str:
    if i < r.ring or r.state == "succeeded":
        return "passed"
    if i > r.ring:
        return "waiting"
    if r.state == "rolled_back":
        return "failed" if r.ring_phase == "deploying" else "waiting"
    if r.state == "awaiting_approval":
        return "awaiting_approval"
    return r.ring_phase


def rollout_view(
    s: Session, r: Rollout, full: bool = True, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    app = s.get(App, r.app_id)
    out: dict[str, Any] = {
        "id": r.id,
        "app": app.name if app else str(r.app_id),
        "state": r.state,
        "ring": r.ring,
        "ring_phase": r.ring_phase,
        "batch": r.batch,
        "budgets": r.budgets,
        "from": {
            "image": r.from_version.get("image"),
            "spec": redact_spec(r.from_version.get("spec") or {}),
        },
        "to": {
            "image": r.to_version.get("image"),
            "spec": redact_spec(r.to_version.get("spec") or {}),
        },
        "reason": r.reason if r.state != "paused" else "",
        "created_by": r.created_by,
        "created_at": r.created_at.isoformat() + "Z",
        "updated_at": r.updated_at.isoformat() + "Z",
    }
    if not full:
        return out
    ctx = _Ctx(s, r, now)
    rows = s.execute(
        select(RolloutNode, Node)
        .join(Node, Node.id == RolloutNode.node_id)
        .where(RolloutNode.rollout_id == r.id)
        .order_by(RolloutNode.ring, RolloutNode.batch, Node.serial)
    ).all()
    pairs = [(row, node) for row, node in rows]
    app_uuid = app.uuid if app else ""
    rings = []
    for i, ring in enumerate(r.rings):
        nodes = [_node_json(ctx, row, node, app_uuid) for row, node in pairs if row.ring == i]
        rings.append(
            {
                "index": i,
                **ring,
                "status": _ring_status(r, i),
                "approved": i in r.approved_rings,
                "batch_count": max((n["batch"] for n in nodes), default=-1) + 1,
                "nodes": nodes,
            }
        )
    expected = _expected(ctx, pairs)
    out["rings"] = rings
    out["expected_completion"] = expected
    out["expected_completion_at"] = _when(expected) if expected is not None else None
    out["history"] = r.history
    return out
