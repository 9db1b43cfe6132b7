"""The processing loop (inference_vm.pipeline) with a fake detector and an in-memory source."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

pytest.importorskip("cv2")

from inference_vm.detection import Detection
from inference_vm.metrics import Metrics
from inference_vm.pipeline import Pipeline
from inference_vm.sources import Frame


class Frames:
    """Frames numbered 1..count, each handed out once."""

    def __init__(self, count: int) -> None:
        self.count = count

    def latest(self, after: int = 0, timeout: float | None = None) -> Frame | None:
        if after >= self.count:
            time.sleep(min(timeout or 0.0, 0.01))
            return None
        return Frame(np.zeros((48, 64, 3), np.uint8), time.monotonic(), after + 1)


class FlakyDetector:
    """Finds one face per frame, except that frame 3's postprocess raises."""

    name = "fake"
    device = "none"

    def preprocess(self, frame: np.ndarray, mode: str) -> Any:
        return frame

    def infer(self, prepared: Any) -> int:
        return 1

    def infer_async(self, prepared: Any) -> Future[int]:
        future: Future[int] = Future()
        future.set_result(self.infer(prepared))
        return future

    def postprocess(self, raw: Any, prepared: Any) -> list[Detection]:
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            raise RuntimeError("bad frame")
        return [Detection("face", 1, 1, 10, 10, 0.9)]

    def close(self) -> None:
        pass


def run_until(metrics: Metrics, pipeline: Pipeline, frames: int) -> None:
    pipeline.start()
    deadline = time.monotonic() + 30
    while metrics.frames_processed < frames and time.monotonic() < deadline:
        time.sleep(0.01)
    pipeline.stop()


@pytest.mark.parametrize("async_infer", [False, True])
def test_a_failing_frame_is_counted_and_processing_goes_on(async_infer: bool) -> None:
    metrics = Metrics()
    pipeline = Pipeline(Frames(8), FlakyDetector(), metrics, async_infer=async_infer)  # type: ignore[arg-type]
    run_until(metrics, pipeline, 6)
    assert pipeline.errors == 1
    assert metrics.frames_processed >= 6
    assert metrics.snapshot()["detections"]["total"]["face"] == metrics.frames_processed


def test_the_newest_jpeg_is_handed_to_stream_clients() -> None:
    metrics = Metrics()
    pipeline = Pipeline(Frames(3), FlakyDetector(), metrics, async_infer=False)  # type: ignore[arg-type]
    run_until(metrics, pipeline, 2)
    found = pipeline.wait_jpeg(0, timeout=1)
    assert found is not None and found[1][:2] == b"\xff\xd8"  # a JPEG


def test_an_unknown_mode_is_refused() -> None:
    pipeline = Pipeline(Frames(0), FlakyDetector(), Metrics())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        pipeline.mode = "nose"  # type: ignore[assignment]
