"""A batch's health gate: pure functions of what the nodes reported and the time.

Per node (``observe``): once the node reports the generation carrying the new version,
the app must be RUNNING — and, when the new version has a health probe, its probe must say
``healthy``; ``running_since`` is when it was first seen so, and any later sighting of
anything else counts a restart, as does a restart the agent counted itself
(``AppStatus.restarts``: a crash and restart, or a liveness restart, between two reports).
An unhealthy verdict fails the node at once (``UNHEALTHY`` with the probe's last failure).

Per node (``node_verdict``), counting from its switch-over:

    in ERROR, CRASHLOOP, HALTED or UNHEALTHY, or restarted   → failed
    RUNNING (and healthy) for ``soak_s``                     → healthy
    ``deadline_s`` since its switch-over, not so             → failed
    otherwise                                                → pending

Per batch (``evaluate``): it passes once every node is decided and at least
``threshold_pct`` of them are healthy, fails as soon as that can no longer be reached,
else waits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from protocol.messages import AppState, AppStatus

__all__ = ["GateResult", "Progress", "batch_gate", "evaluate", "node_verdict", "observe"]

UNHEALTHY = "UNHEALTHY"
FAILED_STATES = (AppState.ERROR, AppState.CRASHLOOP, AppState.HALTED, UNHEALTHY)


@dataclass
class Progress:
    serial: str
    generation: int
    """The config generation that carries the new version."""
    state: str = ""
    running_since: float | None = None
    restarts: int = 0
    error: str = ""
    switched_at: float | None = None
    """When the node was switched to the new version (None: when the batch started)."""
    probed: bool = False
    """The new version has a health probe: RUNNING counts only once it is healthy."""


@dataclass(frozen=True)
class GateResult:
    verdict: Literal["pass", "wait", "fail"]
    reason: str = ""


def observe(
    p: Progress,
    reported_generation: int,
    status: AppStatus | None,
    now: float,
    expected: AppState = AppState.RUNNING,
) -> Progress:
    """Fold one report of the node into its progress (returns ``p``, updated).

    The status's ``restarts`` is the agent's count of restarts of the app's current spec,
    so a crash and restart between two reports is not missed.
    """
    if reported_generation < p.generation:
        p.state = "UPDATING"
        return p
    state = status.state.value if status else "MISSING"
    health = status.health if status else None
    if state == expected and p.probed and expected == AppState.RUNNING:
        if health is not None and health.status == "unhealthy":
            state = UNHEALTHY
            p.error = f"health probe: {health.last_failure}"[:1024]
        elif health is None or health.status != "healthy":
            state = "STARTING"
    if state == expected:
        if p.running_since is None:
            p.running_since = now
    elif p.running_since is not None:
        p.restarts += 1
        p.running_since = None
    p.restarts = max(p.restarts, status.restarts if status else 0)
    p.state = state
    if status and status.error:
        p.error = status.error[:1024]
    return p


def _healthy_words(expected: str, probed: bool) -> str:
    return f"{expected} and healthy" if probed and expected == AppState.RUNNING else expected


def node_verdict(
    p: Progress,
    soak_s: float,
    deadline_s: float,
    started_at: float,
    now: float,
    expected: AppState = AppState.RUNNING,
) -> tuple[Literal["healthy", "failed", "pending"], str]:
    """One node's verdict and, when failed, why (see the module docstring)."""
    if p.state in FAILED_STATES and p.state != expected:
        detail = f": {p.error}" if p.error else ""
        return "failed", f"{p.serial}: app is {p.state}{detail}"
    if p.restarts:
        return "failed", f"{p.serial}: app restarted during the health window"
    if p.running_since is not None and now - p.running_since >= soak_s:
        return "healthy", ""
    since = p.switched_at if p.switched_at is not None else started_at
    if now - since >= deadline_s:
        words = _healthy_words(expected, p.probed)
        return "failed", f"{p.serial}: not {words} for {soak_s:g} s within {deadline_s:g} s"
    return "pending", ""


def batch_gate(verdicts: Sequence[tuple[str, str]], threshold_pct: int, passed: str) -> GateResult:
    """A batch from its nodes' (verdict, reason): pass once all are decided and enough are
    healthy, fail once enough cannot be, else wait (``passed`` words the pass)."""
    need = math.ceil(threshold_pct * len(verdicts) / 100)
    failed = [reason for verdict, reason in verdicts if verdict == "failed"]
    healthy = sum(verdict == "healthy" for verdict, _ in verdicts)
    if len(failed) > len(verdicts) - need:
        if threshold_pct < 100:
            return GateResult(
                "fail",
                f"{len(failed)} of {len(verdicts)} nodes failed (at least {threshold_pct} %"
                f" must be healthy): {failed[0]}",
            )
        late = [r for r in failed if ": not " in r and " within " in r]
        if len(late) == len(failed) > 1:  # only late nodes: name them together
            serials = ", ".join(r.split(":")[0] for r in late[:5])
            return GateResult("fail", f"{serials}:{late[0].split(':', 1)[1]}")
        return GateResult("fail", failed[0])
    if healthy + len(failed) == len(verdicts):
        return GateResult("pass", f"{healthy} of {len(verdicts)} node(s) {passed}")
    return GateResult("wait")


def evaluate(
    nodes: list[Progress],
    soak_s: float,
    deadline_s: float,
    started_at: float,
    now: float,
    expected: AppState = AppState.RUNNING,
    threshold_pct: int = 100,
) -> GateResult:
    """The gate of a batch of switched nodes, from their progress (module docstring)."""
    verdicts = [node_verdict(p, soak_s, deadline_s, started_at, now, expected) for p in nodes]
    words = _healthy_words(expected, any(p.probed for p in nodes))
    return batch_gate(verdicts, threshold_pct, f"{words} for {soak_s:g} s")
