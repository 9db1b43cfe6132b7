"""A ring's health gate: pure functions of what the nodes reported and the time.

Per node (``observe``): once the node reports the generation carrying the new version,
the app must be RUNNING; ``running_since`` is when it was first seen so, and any later
sighting of another state counts a restart, as does a restart the agent counted itself
(``AppStatus.restarts``: a crash and restart between two reports).  Per ring (``evaluate``):

    any node in ERROR or HALTED, or restarted        → fail
    every node RUNNING for ``soak_s``                → pass
    ``deadline_s`` since the ring started, not so    → fail
    otherwise                                        → wait
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocol.messages import AppState, AppStatus

__all__ = ["GateResult", "Progress", "evaluate", "observe"]

FAILED_STATES = (AppState.ERROR, AppState.CRASHLOOP, AppState.HALTED)


@dataclass
class Progress:
    serial: str
    generation: int
    """The config generation that carries the new version."""
    state: str = ""
    running_since: float | None = None
    restarts: int = 0
    error: str = ""


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


def evaluate(
    nodes: list[Progress],
    soak_s: float,
    deadline_s: float,
    started_at: float,
    now: float,
    expected: AppState = AppState.RUNNING,
) -> GateResult:
    for p in nodes:
        if p.state in FAILED_STATES and p.state != expected:
            detail = f": {p.error}" if p.error else ""
            return GateResult("fail", f"{p.serial}: app is {p.state}{detail}")
        if p.restarts:
            return GateResult("fail", f"{p.serial}: app restarted during the health window")
    if all(p.running_since is not None and now - p.running_since >= soak_s for p in nodes):
        return GateResult("pass", f"{len(nodes)} node(s) {expected} for {soak_s:g} s")
    if now - started_at >= deadline_s:
        late = [p.serial for p in nodes if p.running_since is None]
        late = late or [p.serial for p in nodes]
        return GateResult(
            "fail",
            f"{', '.join(late[:5])}: not {expected} for {soak_s:g} s within {deadline_s:g} s",
        )
    return GateResult("wait")
