"""Wiring: config → detector, source, metrics, pipeline, events, web server; start and stop.

:class:`InferenceApp` is also the :class:`~inference_vm.web.Backend` the web server reads.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from inference_vm.config import AppConfig, DetectorConfig
from inference_vm.detection import Detector
from inference_vm.events import EventPoster
from inference_vm.fleet_report import FleetReporter
from inference_vm.metrics import Metrics
from inference_vm.pipeline import Pipeline
from inference_vm.sources import FrameSource
from inference_vm.web import WebServer

log = logging.getLogger(__name__)


def make_detector(config: DetectorConfig) -> Detector:
    """The configured detector (imports OpenVINO only when it is the one asked for)."""
    if config.kind == "haar":
        from inference_vm.haar import HaarDetector

        return HaarDetector(min_face=config.haar_min_face, requests=config.requests)
    from inference_vm.openvino_detector import OpenVINODetector

    return OpenVINODetector(
        model=config.model,
        device=config.device,
        score_threshold=config.score_threshold,
        nms_threshold=config.nms_threshold,
        requests=config.requests,
        throughput=config.performance_hint == "throughput",
    )


class InferenceApp:
    """The running app; ``start()`` returns once the web server listens."""

    def __init__(self, config: AppConfig, detector: Detector | None = None) -> None:
        self.config = config
        self.max_stream_fps = config.server.max_stream_fps
        self.detector = detector or make_detector(config.detector)
        self.source = FrameSource(config.source)
        self.metrics = Metrics(info=self._info)
        context = {"detector": self.detector.name, "device": self.detector.device}
        self.events = EventPoster(config.events, context)
        self.pipeline = Pipeline(
            self.source,
            self.detector,
            self.metrics,
            mode=config.detector.mode,
            async_infer=config.detector.async_infer,
            requests=config.detector.requests,
            jpeg_quality=config.server.jpeg_quality,
            on_result=self.events.offer,
        )
        self.web = WebServer(self, config.server.host, config.server.port)
        reason = str(getattr(self.detector, "device_reason", f"{self.detector.device}"))
        self.reporter = FleetReporter(config.report, self.metrics_json, reason)
        self._stopping = threading.Event()

    def _info(self) -> dict[str, Any]:
        stats = self.source.stats
        return {
            "detector": self.detector.name,
            "device": self.detector.device,
            "mode": self.pipeline.mode,
            "async": self.config.detector.async_infer,
            "source_kind": self.source.kind,
            "source": {
                "frames_read": stats.frames_read,
                "frames_dropped": stats.frames_dropped,
                "reconnects": stats.reconnects,
                "connected": stats.connected,
                "last_error": stats.last_error,
            },
            "events": {"sent": self.events.sent, "failed": self.events.failed},
        }

    # Backend protocol (web.py)
    def metrics_json(self) -> dict[str, Any]:
        return self.metrics.snapshot()

    def metrics_text(self) -> str:
        return self.metrics.prometheus()

    def wait_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        return self.pipeline.wait_jpeg(after, timeout)

    def get_mode(self) -> str:
        return self.pipeline.mode

    def set_mode(self, mode: str) -> None:
        self.pipeline.mode = mode  # type: ignore[assignment]  # the setter validates

    def healthy(self) -> bool:
        return self.pipeline.running and self.metrics.frames_processed > 0

    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> InferenceApp:
        self.source.start()
        self.pipeline.start()
        self.web.start()
        self.reporter.start()
        log.info(
            "serving on http://%s:%d/ (%s on %s, mode %s, source %s)",
            self.config.server.host,
            self.web.port,
            self.detector.name,
            self.detector.device,
            self.pipeline.mode,
            self.config.source.url,
        )
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.reporter.close()
        self.web.stop()
        self.pipeline.stop()
        self.source.stop()
        self.events.close()
        self.detector.close()
