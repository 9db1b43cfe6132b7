"""Reports the app's metrics to the Outpost metadata service, which the node's agent forwards
to the controller as the app's own metrics (``POST <report.url>``, JSON, every
``report.interval_s``).

Values: ``fps``, ``latency_p50_ms``/``latency_p99_ms`` (frame read → annotated JPEG),
``inference_p50_ms``, ``frames_processed``, ``detections_last`` (boxes in the last frame),
``detections_total``.  Labels: ``detector``, ``device`` (where inference runs),
``device_reason`` (why: the preference, a fallback), ``mode`` (face/eyes), ``source_kind``.
The document is the wire's ``AppReport`` shape (names ``[a-z][a-z0-9_]*``, finite numbers,
labels of at most 64 printable ASCII characters).  A failed post is logged once per run of
failures and retried at the next interval; it never stops the app.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

from inference_vm.config import ReportConfig

__all__ = ["FleetReporter", "report_document"]

log = logging.getLogger(__name__)


def _label(value: Any) -> str:
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in str(value))
    return text[:64]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def report_document(snapshot: dict[str, Any], device_reason: str) -> dict[str, Any]:
    """The report for one ``Metrics.snapshot()`` (with the app's info merged in)."""
    stages = snapshot.get("stages", {})
    detections = snapshot.get("detections", {})
    values = {
        "fps": snapshot.get("fps"),
        "latency_p50_ms": stages.get("end_to_end", {}).get("p50_ms"),
        "latency_p99_ms": stages.get("end_to_end", {}).get("p99_ms"),
        "inference_p50_ms": stages.get("inference", {}).get("p50_ms"),
        "frames_processed": snapshot.get("frames_processed"),
        "detections_last": len(detections.get("last_frame", [])),
        "detections_total": sum((detections.get("total") or {}).values()),
    }
    labels = {
        "detector": snapshot.get("detector", ""),
        "device": snapshot.get("device", ""),
        "device_reason": device_reason,
        "mode": snapshot.get("mode", ""),
        "source_kind": snapshot.get("source_kind", ""),
    }
    return {
        "values": {k: n for k, v in values.items() if (n := _number(v)) is not None},
        "labels": {k: _label(v) for k, v in labels.items()},
    }


class FleetReporter:
    """A daemon thread posting :func:`report_document` of ``snapshot()`` to ``config.url``."""

    def __init__(
        self, config: ReportConfig, snapshot: Callable[[], dict[str, Any]], device_reason: str
    ) -> None:
        self.config = config
        self.snapshot = snapshot
        self.device_reason = device_reason
        self.sent = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> FleetReporter:
        if self.config.url:
            self._thread = threading.Thread(target=self._run, name="fleet-report", daemon=True)
            self._thread.start()
            log.info("reporting metrics to %s every %g s", self.config.url, self.config.interval_s)
        return self

    def post_once(self) -> bool:
        """Post one report now; True when the service took it."""
        assert self.config.url
        body = json.dumps(report_document(self.snapshot(), self.device_reason)).encode()
        request = urllib.request.Request(
            self.config.url, body, {"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as answer:
                ok = bool(200 <= answer.status < 300)
        except OSError as exc:  # URLError, HTTPError, timeouts
            if self.failed == 0 or self.sent > 0:
                log.warning("metrics report to %s failed: %s", self.config.url, exc)
            self.failed, self.sent = self.failed + 1, 0
            return False
        if ok and self.sent == 0:
            log.info("metrics report accepted by %s", self.config.url)
        self.sent += 1
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            self.post_once()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.timeout_s + 1)
