"""The processing loop: newest frame → detector stages → boxes drawn → JPEG for the web page.

Sync mode runs the stages one after another. Async mode keeps up to ``requests``
inferences in flight: while the detector works on frame N, the loop waits for and
preprocesses frame N+1 and then finishes (postprocess, draw, encode) frame N. Every
stage is timed into :class:`~inference_vm.metrics.Metrics`; each finished frame is
offered to ``on_result`` (detection events).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from inference_vm.config import MODES, Mode
from inference_vm.detection import Detection, Detector
from inference_vm.metrics import Metrics
from inference_vm.sources import Frame, FrameSource

log = logging.getLogger(__name__)

COLOURS = {"face": (0, 200, 0), "eye": (0, 160, 255)}
ERROR_PAUSE_S = 0.5
ResultCallback = Callable[[int, list[Detection]], None]


@dataclass
class _InFlight:
    frame: Frame
    prepared: Any
    future: Future[Any]
    submitted: float
    done_at: float = 0.0


def annotate(image: np.ndarray, detections: list[Detection], caption: str) -> np.ndarray:
    """A copy of ``image`` with boxes (faces with their score) and a caption line."""
    out = image.copy()
    for det in detections:
        colour = COLOURS.get(det.label, (255, 255, 255))
        p1, p2 = (int(det.x1), int(det.y1)), (int(det.x2), int(det.y2))
        cv2.rectangle(out, p1, p2, colour, 2)
        if det.label == "eye":
            continue  # eye boxes are small and in pairs: a caption would cover them
        cv2.putText(
            out,
            f"{det.label} {det.score:.2f}",
            (p1[0], max(12, p1[1] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            colour,
            1,
            cv2.LINE_AA,
        )
    cv2.putText(
        out,
        caption,
        (8, out.shape[0] - 8),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return out


class Pipeline:
    """Runs ``detector`` on ``source`` on a thread; hands out the newest annotated JPEG."""

    def __init__(
        self,
        source: FrameSource,
        detector: Detector,
        metrics: Metrics,
        mode: Mode = "face",
        async_infer: bool = True,
        requests: int = 2,
        jpeg_quality: int = 80,
        on_result: ResultCallback | None = None,
    ) -> None:
        self.source = source
        self.detector = detector
        self.metrics = metrics
        self.async_infer = async_infer
        self.requests = max(1, requests)
        self.jpeg_quality = jpeg_quality
        self.on_result = on_result
        self._mode: Mode = mode
        self.errors = 0
        self._cond = threading.Condition()
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if value != self._mode:
            log.info("mode: %s → %s", self._mode, value)
        self._mode = value

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> Pipeline:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def wait_jpeg(self, after: int = 0, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The newest annotated JPEG numbered above ``after`` (None on timeout or stop)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._jpeg[0] <= after and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._jpeg if self._jpeg[0] > after else None

    def _next_frame(self, after: int, timeout: float) -> Frame | None:
        started = time.perf_counter()
        frame = self.source.latest(after=after, timeout=timeout)
        if frame is not None:
            self.metrics.observe("capture", time.perf_counter() - started)
        return frame

    def _submit(self, frame: Frame) -> _InFlight:
        started = time.perf_counter()
        prepared = self.detector.preprocess(frame.image, self._mode)
        submitted = time.perf_counter()
        self.metrics.observe("preprocess", submitted - started)
        if self.async_infer:
            future = self.detector.infer_async(prepared)
        else:
            future = Future()
            future.set_result(self.detector.infer(prepared))
        item = _InFlight(frame, prepared, future, submitted)
        future.add_done_callback(lambda _f: setattr(item, "done_at", time.perf_counter()))
        return item

    def _finish(self, item: _InFlight) -> None:
        raw = item.future.result()
        done_at = item.done_at or time.perf_counter()  # its callback may not have run yet
        self.metrics.observe("inference", max(0.0, done_at - item.submitted))
        t0 = time.perf_counter()
        detections = self.detector.postprocess(raw, item.prepared)
        t1 = time.perf_counter()
        caption = (
            f"{self.detector.name}/{self.detector.device} {self._mode} {self.metrics.fps():.1f} fps"
        )
        image = annotate(item.frame.image, detections, caption)
        t2 = time.perf_counter()
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        t3 = time.perf_counter()
        for stage, seconds in (
            ("postprocess", t1 - t0),
            ("annotate", t2 - t1),
            ("encode", t3 - t2),
        ):
            self.metrics.observe(stage, seconds)
        self.metrics.observe("end_to_end", time.monotonic() - item.frame.captured)
        self.metrics.frame_done([d.to_json() for d in detections])
        if ok:
            with self._cond:
                self._jpeg = (item.frame.number, jpeg.tobytes())
                self._cond.notify_all()
        if self.on_result is not None:
            self.on_result(item.frame.number, detections)

    def _run(self) -> None:
        inflight: deque[_InFlight] = deque()
        last = 0
        depth = self.requests if self.async_infer else 1
        while not self._stop.is_set():
            try:
                frame = self._next_frame(last, timeout=0.0 if inflight else 0.5)
                if frame is not None:
                    last = frame.number
                    inflight.append(self._submit(frame))
                while inflight and (
                    len(inflight) >= depth or frame is None or inflight[0].future.done()
                ):
                    self._finish(inflight.popleft())
            except Exception:  # one bad frame must not end the service
                log.exception("frame %d failed", last)
                self.errors += 1
                inflight.clear()
                self._stop.wait(ERROR_PAUSE_S)
        for item in inflight:
            item.future.cancel()
