"""Everything the node tells the controller: info (reliable), logs (queued), metrics (lossy).

* info: the newest message is written to the outbox first, then sent; it is deleted only
  when the controller took it, so it survives outages and agent restarts.  A new one is
  made when the app states or the port state change, or every ``info_interval_s``.
* logs: the shipper batches new agent/console lines into the outbox; queued batches go
  out oldest first and stay queued (bounded) while the controller is away.
* metrics: a sample every ``metrics_interval_s``; lost samples are not resent.

While the controller has revoked the node (:class:`node_agent.revocation.Revocation`)
nothing is sent (info and logs stay in the outbox); a send answered 403 "revoked" is
noted there, not logged as an outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from node_agent.client import ControllerError, Unreachable
from node_agent.log_shipper import AgentLogBuffer, LogShipper
from node_agent.metrics import collect_metrics, libvirt_stats, podman_stats
from node_agent.outbox import Outbox
from node_agent.revocation import Revocation
from node_agent.runtime.base import Runtime
from node_agent.settings import AgentSettings
from protocol.app_config import AppReport
from protocol.messages import AppMetrics, InfoMessage

__all__ = ["SEND_ERRORS", "Reporter"]

log = logging.getLogger(__name__)
SEND_ERRORS = (Unreachable, ControllerError)
Send = Callable[[str, dict[str, Any]], Any]  # (path, body) → answer; raises SEND_ERRORS


class Reporter:
    def __init__(
        self,
        settings: AgentSettings,
        send: Send,
        log_buffer: AgentLogBuffer,
        revocation: Revocation | None = None,
    ) -> None:
        self.settings = settings
        self.send = send
        self.revocation = revocation or Revocation(settings.revoked_check_s)
        self.outbox = Outbox(settings.state_dir)
        self.shipper = LogShipper(settings.state_dir, self.outbox, log_buffer)
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0
        self._next_logs = 0.0
        self._next_metrics = 0.0

    def info(self, msg: InfoMessage, interval_s: float, force: bool = False) -> bool:
        """Queue a new info message when something changed (or it is due); deliver it.

        True when nothing is left to deliver.
        """
        body = msg.model_dump(mode="json")
        due = time.monotonic() - self._last_at >= interval_s
        if force or due or body != self._last:
            self.outbox.put_info(body)
            self._last, self._last_at = body, time.monotonic()
        pending = self.outbox.pending_info()
        if pending is None:
            return True
        if self.revocation.revoked:
            return False
        try:
            self.send("info", pending)
        except SEND_ERRORS as exc:
            if not self.revocation.note(exc):
                log.warning("info not delivered (kept in the outbox): %s", exc)
            return False
        self.outbox.info_delivered(pending)
        return True

    def logs(self, force: bool = False) -> int:
        """Batch new lines (at the ship interval) and deliver queued batches."""
        now = time.monotonic()
        if not force and now < self._next_logs:
            return 0
        self._next_logs = now + self.settings.log_ship_interval_s
        self.shipper.collect()
        if self.revocation.revoked:
            return 0
        try:
            return self.outbox.deliver_logs(lambda batch: self.send("logs", batch))
        except SEND_ERRORS as exc:
            if not self.revocation.note(exc):
                log.warning(
                    "%d log batches queued (controller away): %s", self.outbox.queued(), exc
                )
            return 0

    def metrics(
        self,
        runtimes: Mapping[str, Runtime],
        interval_s: float,
        reports: Mapping[str, AppReport] | None = None,
    ) -> bool:
        """Send a metrics sample when due; ``reports``: the apps' own latest reports (from
        the metadata service), attached to their runtime counters."""
        now = time.monotonic()
        if now < self._next_metrics or self.revocation.revoked:
            return False
        self._next_metrics = now + interval_s
        apps: list[AppMetrics] = []
        if "vm" in runtimes:
            apps += _quiet(
                lambda: libvirt_stats(self.settings.libvirt_uri, runtimes["vm"].list().values())
            )
        if "container" in runtimes:
            apps += _quiet(
                lambda: podman_stats(
                    self.settings.podman,
                    self.settings.podman_global_args,
                    runtimes["container"].list().values(),
                )
            )
        if reports:
            apps = [
                a.model_copy(update={"reported": reports[a.uuid]}) if a.uuid in reports else a
                for a in apps
            ]
        try:
            self.send(
                "metrics", collect_metrics(self.settings.state_dir, apps).model_dump(mode="json")
            )
        except SEND_ERRORS as exc:
            if not self.revocation.note(exc):
                log.debug("metrics sample lost: %s", exc)
            return False
        return True


def _quiet(fn: Callable[[], list[AppMetrics]]) -> list[AppMetrics]:
    try:
        return fn()
    except Exception as exc:
        log.debug("app stats unavailable: %s", exc)
        return []
