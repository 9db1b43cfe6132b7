"""Disruption budgets: may one more node of its group be switched now?

A budget (``plan.BudgetBody``) groups the app's nodes by the values of its ``group_by``
labels (e.g. ``site``).  Per group it counts nodes *updating* (switched by this rollout and
not yet healthy for their soak, or failed) and nodes *healthy* (the app reported RUNNING,
and healthy when probed, and not updating).  A node is held back when

    max_updating   its group already has that many updating, or
    min_healthy    switching it would leave fewer healthy nodes in its group

The ledger is built once per engine step from every node of the app and updated as nodes
are switched within the step (pure; no database).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.rollouts.plan import BudgetBody

__all__ = ["BudgetLedger", "Member"]


@dataclass(frozen=True)
class Member:
    node_id: int
    labels: Mapping[str, Any]
    updating: bool
    healthy: bool


def _group(budget: BudgetBody, labels: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(labels.get(k, "")) for k in budget.group_by)


def _describe(budget: BudgetBody, group: tuple[str, ...]) -> str:
    return ",".join(f"{k}={v or '-'}" for k, v in zip(budget.group_by, group, strict=True))


class BudgetLedger:
    def __init__(self, budgets: list[BudgetBody], members: Iterable[Member]) -> None:
        self.budgets = budgets
        self.counts: list[dict[tuple[str, ...], list[int]]] = [{} for _ in budgets]
        self.healthy: set[int] = set()
        for m in members:
            if m.healthy and not m.updating:
                self.healthy.add(m.node_id)
            for budget, counts in zip(budgets, self.counts, strict=True):
                c = counts.setdefault(_group(budget, m.labels), [0, 0])
                c[0] += int(m.updating)
                c[1] += int(m.healthy and not m.updating)

    @property
    def needs_health(self) -> bool:
        """Whether healthy counts matter (some budget has ``min_healthy``)."""
        return any(b.min_healthy is not None for b in self.budgets)

    def blocked(self, node_id: int, labels: Mapping[str, Any]) -> str | None:
        """Why switching the node now would break a budget (None: it would not)."""
        for budget, counts in zip(self.budgets, self.counts, strict=True):
            group = _group(budget, labels)
            updating, healthy = counts.get(group, [0, 0])
            where = _describe(budget, group)
            if budget.max_updating is not None and updating >= budget.max_updating:
                return f"budget {where}: {updating} updating (at most {budget.max_updating})"
            if budget.min_healthy is not None:
                left = healthy - int(node_id in self.healthy)
                if left < budget.min_healthy:
                    return (
                        f"budget {where}: switching would leave {left} healthy"
                        f" (at least {budget.min_healthy})"
                    )
        return None

    def switch(self, node_id: int, labels: Mapping[str, Any]) -> None:
        """Count the node as updating from now on."""
        was_healthy = node_id in self.healthy
        self.healthy.discard(node_id)
        for budget, counts in zip(self.budgets, self.counts, strict=True):
            c = counts.setdefault(_group(budget, labels), [0, 0])
            c[0] += 1
            c[1] -= int(was_healthy)
