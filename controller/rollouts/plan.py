"""Rollout requests, ring selection and batches.

A ring names its nodes by labels (``selector``, also device labels as ``device/<key>``),
by a share of the app's nodes (``percent``: cumulative — a 50 % ring brings the rollout
to half of the nodes), or takes every node left (neither).  Nodes are taken in serial
order, never twice.  A ring may be cut into batches (``batches``: ``count`` nodes or
``percent`` of the ring each), each gated by ``success_threshold_pct`` (the share of the
batch that must be healthy for its soak time); without ``batches`` the ring is one batch.
Disruption budgets (``budgets``, for the whole rollout) bound per label group how many
nodes are updating at once and how many must stay healthy (``controller.rollouts.budgets``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from controller.domain.bodies import AppBody, LabelKey, LabelValue
from controller.domain.common import Body

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_SOAK_S",
    "BatchBody",
    "BudgetBody",
    "Candidate",
    "RingBody",
    "RolloutBody",
    "select_ring",
    "split_batches",
]

DEFAULT_SOAK_S = 300.0
"""A ring's nodes must run the new version this long without a restart (5 minutes)."""
DEFAULT_DEADLINE_S = 1800.0
"""…and reach that within this long of the ring's start, or the rollout is rolled back."""


class BatchBody(Body):
    """How a ring is cut into batches (one of ``count`` or ``percent``)."""

    model_config = ConfigDict(json_schema_extra={"x-rules": ["exactly one of count, percent"]})

    count: int | None = Field(default=None, ge=1, le=100_000)
    percent: int | None = Field(default=None, ge=1, le=100)
    """Of the ring's nodes, rounded up."""
    success_threshold_pct: int = Field(default=100, ge=1, le=100)
    """Share of a batch that must be healthy for the soak time for the next to start."""

    @model_validator(mode="after")
    def _one_size(self) -> BatchBody:
        if (self.count is None) == (self.percent is None):
            raise ValueError("batches take a count or a percent (one of them)")
        return self


class BudgetBody(Body):
    """A disruption budget per group of nodes sharing the values of ``group_by``."""

    model_config = ConfigDict(
        json_schema_extra={"x-rules": ["at least one of max_updating, min_healthy"]}
    )

    group_by: list[LabelKey] = Field(min_length=1, max_length=4)
    max_updating: int | None = Field(default=None, ge=1, le=100_000)
    """At most this many nodes of a group switched and not yet healthy at once."""
    min_healthy: int | None = Field(default=None, ge=0, le=100_000)
    """A node is switched only if this many others of its group stay healthy."""

    @model_validator(mode="after")
    def _bounded(self) -> BudgetBody:
        if self.max_updating is None and self.min_healthy is None:
            raise ValueError("a budget needs max_updating or min_healthy")
        return self


class RingBody(Body):
    """One ring: its nodes (a label selector, a percent of the rest, or all the rest), an
    optional approval, and its health gate: ``soak_s`` of RUNNING within ``deadline_s``
    (so ``deadline_s >= soak_s``: the one rule here JSON Schema cannot state)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [  # a selector or a percent, not both
                {"properties": {"selector": {"type": "null"}}},
                {"properties": {"percent": {"type": "null"}}},
            ],
            "x-rules": ["deadline_s >= soak_s"],
        }
    )

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,63}$")] | None = None
    selector: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=16)
    percent: int | None = Field(default=None, ge=1, le=100)
    approval: bool = False
    """Wait for an operator's approval before this ring starts."""
    soak_s: float = Field(default=DEFAULT_SOAK_S, ge=0, le=7 * 86400)
    deadline_s: float = Field(default=DEFAULT_DEADLINE_S, gt=0, le=7 * 86400)
    """Per node, from its switch-over."""
    batches: BatchBody | None = None

    @model_validator(mode="after")
    def _one_way(self) -> RingBody:
        if self.selector is not None and self.percent is not None:
            raise ValueError("a ring takes a selector or a percent, not both")
        if self.deadline_s < self.soak_s:
            raise ValueError("deadline_s must be at least soak_s")
        return self


class RolloutBody(Body):
    """The app's new definition (same schema as PUT /apps/<name>) and the rings."""

    app: AppBody
    rings: list[RingBody] = Field(min_length=1, max_length=10)
    budgets: list[BudgetBody] = Field(default_factory=list, max_length=8)


@dataclass(frozen=True)
class Candidate:
    node_id: int
    serial: str
    labels: dict[str, Any]


def select_ring(
    ring: RingBody, candidates: list[Candidate], taken: set[int], total: int
) -> list[Candidate]:
    """The nodes ``ring`` adds, given the ones earlier rings took."""
    left = sorted((c for c in candidates if c.node_id not in taken), key=lambda c: c.serial)
    if ring.selector:
        return [c for c in left if all(c.labels.get(k) == v for k, v in ring.selector.items())]
    if ring.percent is not None:
        want = math.ceil(ring.percent * total / 100) - len(taken)
        return left[: max(want, 0)]
    return left


def split_batches(nodes: list[Candidate], batches: BatchBody | None) -> list[list[Candidate]]:
    """The ring's nodes (in order) cut into batches; one batch without ``batches``."""
    if batches is None or not nodes:
        return [list(nodes)] if nodes else []
    size = batches.count or math.ceil((batches.percent or 100) * len(nodes) / 100)
    size = max(size, 1)
    return [nodes[i : i + size] for i in range(0, len(nodes), size)]
