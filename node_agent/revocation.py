"""The controller revoked this node: a permanent answer, not an outage.

A 403 whose code is ``revoked`` (any device call: register, attest, config, info, logs,
metrics, renew) is noted once and reported as such in the agent's log; from then on the
agent keeps enforcing its checkpoint (autonomy), sends no reports, and asks the
controller again only every ``revoked_check_s`` (10 min by default) in case an operator
re-admits the node. It is never logged as "controller away" and never retried at the
normal pace.
"""

from __future__ import annotations

import logging
import time

__all__ = ["REVOKED_CHECK_S", "Revocation", "is_revoked"]

log = logging.getLogger(__name__)
REVOKED_CHECK_S = 600.0


def is_revoked(exc: BaseException) -> bool:
    """Is ``exc`` the controller saying this node is revoked (a device call's
    ControllerError, or register's OnboardingRefused)?"""
    return getattr(exc, "status", None) == 403 and getattr(exc, "code", "") == "revoked"


class Revocation:
    """Whether the controller has revoked this node (as last heard), and since when."""

    def __init__(self, check_interval_s: float = REVOKED_CHECK_S) -> None:
        self.check_interval_s = check_interval_s
        self.revoked = False
        self.reason = ""
        self.since: float | None = None

    def note(self, exc: BaseException) -> bool:
        """Record ``exc`` if it is a revocation (logged once); True when it is."""
        if not is_revoked(exc):
            return False
        if not self.revoked:
            self.revoked, self.since = True, time.time()
            self.reason = str(getattr(exc, "message", "") or exc)
            log.error(
                "the controller revoked this node (%s): enforcing the checkpoint, no reports;"
                " asking again every %.0f s",
                self.reason,
                self.check_interval_s,
            )
        return True

    def clear(self) -> None:
        """The controller answered a device call normally again."""
        if self.revoked:
            log.warning("the controller accepts this node again (revocation lifted)")
        self.revoked, self.reason, self.since = False, "", None
