"""Optional detection events: JSON POSTed to a configured URL, rate-limited, never blocking.

A frame with at least one detection becomes an event when ``min_interval_s`` has passed
since the last one; events wait in a bounded queue (the oldest is dropped when full) and
a sender thread POSTs them with a timeout. Failures are counted and logged, not retried.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.request
from typing import Any

from inference_vm.config import EventsConfig
from inference_vm.detection import Detection

log = logging.getLogger(__name__)


class EventPoster:
    """Turns detections into events for ``config.url`` (does nothing when it is None)."""

    def __init__(self, config: EventsConfig, context: dict[str, Any] | None = None) -> None:
        self.config = config
        self.context = context or {}
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=config.queue)
        self._last = float("-inf")
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        if config.url:
            self._thread.start()

    def offer(self, frame_number: int, detections: list[Detection]) -> None:
        """Called by the pipeline for every finished frame."""
        now = time.monotonic()
        if not self.config.url or not detections or now - self._last < self.config.min_interval_s:
            return
        self._last = now
        event = {
            "time": time.time(),
            "frame": frame_number,
            "detections": [d.to_json() for d in detections],
            **self.context,
        }
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=self.config.timeout_s + 1)

    def _run(self) -> None:
        assert self.config.url is not None
        while (event := self._queue.get()) is not None:
            request = urllib.request.Request(
                self.config.url,
                data=json.dumps(event).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout_s) as answer:
                    answer.read()
                self.sent += 1
            except OSError as exc:
                self.failed += 1
                log.warning("event to %s failed: %s", self.config.url, exc)
