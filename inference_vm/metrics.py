"""Pipeline metrics: per-stage latency windows, fps, detection counts; JSON and Prometheus text.

Stages (seconds): ``capture`` (waiting for a new frame), ``preprocess``, ``inference``
(submit to result, so in async mode it includes time queued), ``postprocess``,
``annotate``, ``encode`` (JPEG), and ``end_to_end`` (frame read → annotated JPEG ready).
Latencies keep the last :data:`WINDOW` samples per stage; fps counts frames finished in
the last :data:`FPS_WINDOW_S` seconds, or, when fewer than two finished there (a slow
device: the VM under TCG does a frame every few seconds), over the last
:data:`SLOW_FPS_WINDOW_S` seconds up to now (so it still decays to 0 when frames stop).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("capture", "preprocess", "inference", "postprocess", "annotate", "encode", "end_to_end")
WINDOW = 300
FPS_WINDOW_S = 5.0
SLOW_FPS_WINDOW_S = 60.0
PREFIX = "outpost_inference"
LABELS = ("face", "eye")


@dataclass
class _Stage:
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    total: float = 0.0
    count: int = 0


class Metrics:
    """Thread-safe metric store fed by the pipeline; ``info`` supplies labels and source stats."""

    def __init__(self, info: Callable[[], dict[str, Any]] | None = None) -> None:
        self._lock = threading.Lock()
        self._stages = {name: _Stage() for name in STAGES}
        self._finished: deque[float] = deque(maxlen=4096)
        self._frames = 0
        self._detections_total: Counter[str] = Counter()
        self._last_detections: list[dict[str, Any]] = []
        self._started = time.monotonic()
        self._info = info or dict

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            entry = self._stages[stage]
            entry.samples.append(seconds)
            entry.total += seconds
            entry.count += 1

    def frame_done(self, detections: list[dict[str, Any]], now: float | None = None) -> None:
        """Count one finished frame and its detections (``Detection.to_json()`` dicts)."""
        with self._lock:
            self._frames += 1
            self._finished.append(time.monotonic() if now is None else now)
            self._last_detections = detections
            self._detections_total.update(d["label"] for d in detections)

    @property
    def frames_processed(self) -> int:
        return self._frames

    def fps(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._finished if now - t <= FPS_WINDOW_S]
            slow = [t for t in self._finished if now - t <= SLOW_FPS_WINDOW_S]
        if len(recent) < 2:
            if len(slow) < 2:
                return 0.0
            return (len(slow) - 1) / max(now - slow[0], 1e-9)
        span = max(now - recent[0], 1e-9)
        return (len(recent) - 1) / span if span < FPS_WINDOW_S else len(recent) / FPS_WINDOW_S

    def snapshot(self) -> dict[str, Any]:
        """Everything as one JSON-able dict (what ``GET /api/metrics`` returns)."""
        fps = self.fps()
        with self._lock:
            stages = {}
            for name, entry in self._stages.items():
                values = np.asarray(entry.samples, dtype=np.float64)
                stages[name] = {
                    "count": entry.count,
                    "mean_ms": round(float(values.mean()) * 1000, 3) if values.size else None,
                    "p50_ms": round(float(np.percentile(values, 50)) * 1000, 3)
                    if values.size
                    else None,
                    "p95_ms": round(float(np.percentile(values, 95)) * 1000, 3)
                    if values.size
                    else None,
                    "p99_ms": round(float(np.percentile(values, 99)) * 1000, 3)
                    if values.size
                    else None,
                    "sum_s": round(entry.total, 6),
                }
            data = {
                "uptime_s": round(time.monotonic() - self._started, 3),
                "frames_processed": self._frames,
                "fps": round(fps, 2),
                "stages": stages,
                "detections": {
                    "last_frame": list(self._last_detections),
                    "total": dict(self._detections_total),
                },
            }
        data.update(self._info())
        return data

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        snap = self.snapshot()
        lines: list[str] = []

        def metric(name: str, kind: str, text: str, samples: list[tuple[str, Any]]) -> None:
            lines.append(f"# HELP {PREFIX}_{name} {text}")
            lines.append(f"# TYPE {PREFIX}_{name} {kind}")
            lines.extend(f"{PREFIX}_{name}{labels} {value}" for labels, value in samples)

        info = {k: snap.get(k, "") for k in ("detector", "device", "mode", "source_kind")}
        labels = ",".join(f'{k}="{_escape(str(v))}"' for k, v in info.items())
        metric(
            "info", "gauge", "Detector, device in use, mode, source kind.", [(f"{{{labels}}}", 1)]
        )
        metric(
            "frames_processed_total",
            "counter",
            "Frames run through the detector.",
            [("", snap["frames_processed"])],
        )
        metric(
            "fps",
            "gauge",
            f"Frames processed per second (last {FPS_WINDOW_S:g} s).",
            [("", snap["fps"])],
        )
        stage_samples: list[tuple[str, Any]] = []
        for stage, st in snap["stages"].items():
            for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms")):
                if st[key] is not None:
                    stage_samples.append((f'{{stage="{stage}",quantile="{q}"}}', st[key] / 1000))
            stage_samples.append((f'_sum{{stage="{stage}"}}', st["sum_s"]))
            stage_samples.append((f'_count{{stage="{stage}"}}', st["count"]))
        metric("stage_seconds", "summary", "Latency per pipeline stage.", stage_samples)
        last = Counter(d["label"] for d in snap["detections"]["last_frame"])
        total = snap["detections"]["total"]
        metric(
            "detections",
            "gauge",
            "Boxes found in the last frame.",
            [(f'{{label="{lab}"}}', last.get(lab, 0)) for lab in LABELS],
        )
        metric(
            "detections_total",
            "counter",
            "Boxes found since start.",
            [(f'{{label="{lab}"}}', total.get(lab, 0)) for lab in LABELS],
        )
        source = snap.get("source", {})
        for key, text in (
            ("frames_read", "Frames read from the source."),
            ("frames_dropped", "Frames read but skipped to keep latency bounded."),
            ("reconnects", "Times the source was reopened."),
        ):
            metric(f"source_{key}_total", "counter", text, [("", source.get(key, 0))])
        metric(
            "source_connected",
            "gauge",
            "1 while the source is open.",
            [("", int(bool(source.get("connected"))))],
        )
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
