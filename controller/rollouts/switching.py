"""Whether a queued node of the current batch may be switched to the new version now.

A node waits, in this order, for

    its download        when its site policy sets a download window or a rate cap, until
                        it reports the pre-fetched image ``done`` (``InfoMessage.prefetch``;
                        the agent downloads in its window, at its share of the cap)
    its switch window   the site policy's ``switch_window`` (cron, time zone, grace)
    the budgets         ``budgets.BudgetLedger`` (per label group)

:func:`wait_reason` returns a stable sentence (stored as ``RolloutNode.waiting``: it
changes only when the reason does, so a waiting fleet writes nothing per tick); the view
adds the moving details (percent, rate, when a window opens).  A window's state is cached
per window and minute (:class:`WindowCache`), so a thousand nodes of a few sites cost a few
cron searches per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.domain.site_policies import NodePolicy
from controller.rollouts.budgets import BudgetLedger
from controller.store.models import Node
from protocol.downloads import PrefetchStatus
from protocol.messages import InfoMessage
from protocol.windows import Window, WindowState

__all__ = [
    "WAIT_DOWNLOAD",
    "WAIT_DOWNLOAD_WINDOW",
    "WAIT_SWITCH_WINDOW",
    "WindowCache",
    "prefetch_of",
    "wait_reason",
]

WAIT_DOWNLOAD = "pre-fetching the new image"
WAIT_DOWNLOAD_WINDOW = "waiting for its download window"
WAIT_DOWNLOAD_FAILED = "the pre-fetch failed"
WAIT_SWITCH_WINDOW = "waiting for its switch window"


@dataclass
class WindowCache:
    """Window states per (window, minute) within one engine step."""

    states: dict[tuple[str, int], WindowState] = field(default_factory=dict)

    def state(self, window: Window, now: float) -> WindowState:
        key = (window.model_dump_json(), int(now // 60))
        found = self.states.get(key)
        if found is None:
            found = self.states[key] = window.state(now)
        return found


def prefetch_of(info: InfoMessage | None, sha256: str) -> PrefetchStatus | None:
    """The node's report about pre-fetching ``sha256`` (None: not reported)."""
    if info is None:
        return None
    return next((p for p in info.prefetch if p.sha256 == sha256), None)


def wait_reason(
    node: Node,
    labels: dict[str, object],
    policy: NodePolicy,
    info: InfoMessage | None,
    sha256: str,
    ledger: BudgetLedger | None,
    windows: WindowCache,
    now: float,
) -> str:
    """Why the node may not be switched now ('' : it may)."""
    if policy.download_window is not None or policy.download_rate_bps is not None:
        fetched = prefetch_of(info, sha256)
        if fetched is None or fetched.state != "done":
            if fetched is not None and fetched.state == "failed":
                return f"{WAIT_DOWNLOAD_FAILED}: {fetched.error}"[:256]
            window = policy.download_window
            if window is not None and not windows.state(window, now).open:
                return WAIT_DOWNLOAD_WINDOW
            return WAIT_DOWNLOAD
    if policy.switch_window is not None and not windows.state(policy.switch_window, now).open:
        return WAIT_SWITCH_WINDOW
    if ledger is not None:
        blocked = ledger.blocked(node.id, labels)
        if blocked:
            return blocked[:256]
    return ""
