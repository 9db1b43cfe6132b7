"""Inference app benchmark: Haar vs OpenVINO (BlazeFace) at 640x480, sync vs async.

Frames: scikit-image's astronaut sliding over a 640x480 background (inference_vm.synthetic),
held in memory so the source costs nothing. For each detector:

- inference only: ``detector.infer`` alone on prepared frames, one at a time;
- end to end: the app's own :class:`~inference_vm.pipeline.Pipeline` (preprocess → infer →
  postprocess → draw → JPEG), every frame processed (no dropping), sync (one frame at a time,
  OpenVINO's LATENCY hint) and async (2 requests in flight, THROUGHPUT hint / 2 Haar threads).

Prints a markdown table of per-stage p50 latency (ms) and fps, and the OpenVINO/Haar ratios.

    .venv/bin/python -m benchmarks.inference [--frames 200] [--warmup 10]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import threading
import time
from typing import Any

import cv2
import numpy as np

from inference_vm.detection import Detector
from inference_vm.haar import HaarDetector
from inference_vm.metrics import Metrics
from inference_vm.openvino_detector import OpenVINODetector
from inference_vm.pipeline import Pipeline
from inference_vm.sources import Frame
from inference_vm.synthetic import moving_frames

STAGES = ("preprocess", "inference", "postprocess", "annotate", "encode", "end_to_end")


class ListSource:
    """Hands out the frames in order, each exactly once (no dropping); then nothing."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images
        self.finished = threading.Event()

    def latest(self, after: int = 0, timeout: float | None = None) -> Frame | None:
        if after >= len(self.images):
            self.finished.set()
            time.sleep(min(timeout or 0.0, 0.01))
            return None
        return Frame(self.images[after], time.monotonic(), after + 1)


def frames(count: int) -> list[np.ndarray]:
    from skimage import data

    picture = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return [frame for frame, _ in moving_frames(picture, count, (640, 480))]


def inference_only(detector: Detector, images: list[np.ndarray], warmup: int) -> list[float]:
    prepared = [detector.preprocess(image, "face") for image in images]
    for item in prepared[:warmup]:
        detector.infer(item)
    times = []
    for item in prepared:
        started = time.perf_counter()
        detector.infer(item)
        times.append(time.perf_counter() - started)
    return times


def end_to_end(detector: Detector, images: list[np.ndarray], async_infer: bool) -> dict[str, Any]:
    source = ListSource(images)
    metrics = Metrics()
    pipeline = Pipeline(source, detector, metrics, async_infer=async_infer, requests=2)  # type: ignore[arg-type]
    started = time.perf_counter()
    pipeline.start()
    while metrics.frames_processed < len(images):
        time.sleep(0.02)
    wall = time.perf_counter() - started
    pipeline.stop()
    snap = metrics.snapshot()
    return {"wall": wall, "fps": len(images) / wall, "stages": snap["stages"]}


def make(kind: str, throughput: bool) -> Detector:
    if kind == "haar":
        return HaarDetector(requests=2)
    return OpenVINODetector(device="AUTO", requests=2, throughput=throughput)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    images = frames(args.frames)
    rows = []
    runs = [("haar", False, False), ("haar", True, False)]
    runs += [("openvino", False, False), ("openvino", True, False), ("openvino", True, True)]
    for kind, async_infer, throughput in runs:
        detector = make(kind, throughput)
        end_to_end(detector, images[: args.warmup], async_infer)  # warm up
        only = inference_only(detector, images, args.warmup) if not async_infer else None
        e2e = end_to_end(detector, images, async_infer)
        mode = ("async" if async_infer else "sync") + (" (THROUGHPUT)" if throughput else "")
        rows.append((kind, detector.device, mode, only, e2e))
        detector.close()
    print(
        f"# {platform.node()} {platform.machine()} {time.strftime('%Y-%m-%d')}, "
        f"{args.frames} frames 640x480, OpenCV {cv2.__version__}"
    )
    head = "| detector | device | mode | infer-only p50 ms | infer-only fps |"
    head += "".join(f" {s} p50 ms |" for s in STAGES) + " e2e fps |"
    print(head)
    print("|" + "---|" * (6 + len(STAGES)))
    summary: dict[tuple[str, str], dict[str, float]] = {}
    for kind, device, mode, only, e2e in rows:
        only_ms = statistics.median(only) * 1000 if only else None
        cells = [kind, device, mode]
        cells += [f"{only_ms:.1f}" if only_ms else "", f"{1000 / only_ms:.1f}" if only_ms else ""]
        cells += [f"{e2e['stages'][s]['p50_ms']:.1f}" for s in STAGES]
        cells.append(f"{e2e['fps']:.1f}")
        print("| " + " | ".join(cells) + " |")
        summary[(kind, mode)] = {"fps": e2e["fps"], "only_ms": only_ms or 0.0}
    for mode in ("sync", "async"):
        ratio = summary[("openvino", mode)]["fps"] / summary[("haar", mode)]["fps"]
        print(f"OpenVINO/Haar end-to-end fps ({mode}): {ratio:.1f}x")
    ratio = summary[("haar", "sync")]["only_ms"] / summary[("openvino", "sync")]["only_ms"]
    print(f"OpenVINO/Haar inference-only speed: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
