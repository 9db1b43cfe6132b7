"""When a rollout is expected to finish: a small simulation of what is left of it.

Each node still to go is a :class:`NodeEta`: when its image will be on it (the pre-fetch
left at the measured rate, else at its share of its site's cap; a closed download window
first waits for the opening), its switch window, and its budget groups.  From ``now``
the simulation walks the rings and batches in order, as the engine does:

    a batch starts when the previous one is decided
    a queued node switches once its image is there, its switch window is open, and its
    budget groups have room (``max_updating`` slots; ``min_healthy`` as the slots the
    group can spare), then takes ``switch_s`` to come up and ``soak_s`` to be decided
    the batch ends when its last node is decided

``switch_s`` is what this rollout has seen so far (the median from switch-over to the first
healthy report), 5 s until there is one.  Pure: the view gathers the inputs.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.rollouts.plan import BudgetBody
from protocol.windows import Window

__all__ = ["DEFAULT_SWITCH_S", "NodeEta", "RingEta", "expected_completion", "switch_seconds"]

DEFAULT_SWITCH_S = 5.0


@dataclass
class NodeEta:
    node_id: int
    batch: int
    phase: str = "queued"
    """queued | switched | healthy | failed"""
    image_ready_at: float | None = None
    """When the new image is (expected to be) on the node; None: ``download_s`` after its
    ring starts (a later ring), once ``download_window`` is open."""
    download_s: float = 0.0
    download_window: Window | None = None
    switch_window: Window | None = None
    groups: list[tuple[str, ...]] = field(default_factory=list)
    """Per budget, the node's group."""
    switched_at: float | None = None
    running_since: float | None = None


@dataclass
class RingEta:
    soak_s: float
    nodes: list[NodeEta]


def switch_seconds(pairs: Iterable[tuple[float | None, float | None]]) -> float:
    """Median seconds from switch-over to the first healthy report (``DEFAULT_SWITCH_S``)."""
    seen = [r - s for s, r in pairs if s is not None and r is not None and r >= s]
    return statistics.median(seen) if seen else DEFAULT_SWITCH_S


def _open_at(window: Window | None, t: float) -> float:
    if window is None:
        return t
    state = window.state(t)
    return t if state.open or state.opens_at is None else state.opens_at


class _Slots:
    """Budget room per group: when each of its ``size`` slots frees up."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.ends: list[float] = []

    def earliest(self, t: float) -> float:
        while self.ends and self.ends[0] <= t:
            heapq.heappop(self.ends)
        return t if len(self.ends) < self.size else self.ends[0]

    def take(self, until: float) -> None:
        heapq.heappush(self.ends, until)


def _slot_sizes(
    budgets: list[BudgetBody], counts: list[dict[tuple[str, ...], int]]
) -> list[dict[tuple[str, ...], int]]:
    sizes: list[dict[tuple[str, ...], int]] = []
    for budget, per_group in zip(budgets, counts, strict=True):
        out = {}
        for group, members in per_group.items():
            room = budget.max_updating if budget.max_updating is not None else members
            if budget.min_healthy is not None:
                room = min(room, max(members - budget.min_healthy, 1))
            out[group] = max(room, 1)
        sizes.append(out)
    return sizes


def expected_completion(
    now: float,
    rings: list[RingEta],
    first_batch: int,
    budgets: list[BudgetBody],
    group_counts: list[dict[tuple[str, ...], int]],
    switch_s: float,
) -> float:
    """When the last node of the last ring is expected to be decided."""
    sizes = _slot_sizes(budgets, group_counts)
    slots: list[dict[tuple[str, ...], _Slots]] = [{} for _ in budgets]
    t = now
    for ring_index, ring in enumerate(rings):
        ring_start = t
        for n in ring.nodes:
            if n.image_ready_at is None:
                n.image_ready_at = _open_at(n.download_window, ring_start) + n.download_s
        batches = sorted({n.batch for n in ring.nodes})
        for b in batches:
            if ring_index == 0 and b < first_batch:
                continue
            batch_end = t
            queued = []
            for n in (n for n in ring.nodes if n.batch == b):
                if n.phase in ("healthy", "failed"):
                    continue
                if n.phase == "switched":
                    up = n.running_since or (n.switched_at or now) + switch_s
                    done = max(up + ring.soak_s, now)
                    batch_end = max(batch_end, done)
                    for i, group in enumerate(n.groups):
                        slots[i].setdefault(group, _Slots(sizes[i].get(group, 1))).take(done)
                    continue
                queued.append(n)
            for n in sorted(queued, key=lambda q: q.image_ready_at or 0.0):
                start = _open_at(n.switch_window, max(t, n.image_ready_at or t))
                for _ in range(8):  # room in every group, inside the window
                    room = max(
                        (
                            slots[i].setdefault(g, _Slots(sizes[i].get(g, 1))).earliest(start)
                            for i, g in enumerate(n.groups)
                        ),
                        default=start,
                    )
                    moved = _open_at(n.switch_window, room)
                    if moved == start:
                        break
                    start = moved
                done = start + switch_s + ring.soak_s
                for i, g in enumerate(n.groups):
                    slots[i][g].take(done)
                batch_end = max(batch_end, done)
            t = batch_end
    return t
