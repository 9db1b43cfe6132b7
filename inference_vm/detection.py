"""What a detector returns, and the one interface every detector implements.

A detector works in three stages so the pipeline can time each one and overlap them:
``preprocess`` (frame → model input), ``infer`` (the model; ``infer_async`` returns a
future) and ``postprocess`` (raw output → :class:`Detection` in frame pixels).
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from inference_vm.config import Mode


@dataclass(frozen=True)
class Detection:
    """One box in frame pixels: ``label`` is ``face`` or ``eye``."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    keypoints: tuple[tuple[float, float], ...] = field(default=())

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "box": [round(v, 1) for v in (self.x1, self.y1, self.x2, self.y2)],
            "score": round(self.score, 3),
        }


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@runtime_checkable
class Detector(Protocol):
    """A face/eye detector split in stages (see the module docstring)."""

    name: str
    """Short name for metrics: ``openvino`` or ``haar``."""

    @property
    def device(self) -> str:
        """Where inference runs (``CPU``, ``GPU.0``, ``opencv``)."""
        ...

    def preprocess(self, frame: np.ndarray, mode: Mode) -> Any:
        """Model input for a BGR frame, plus what postprocess needs (mode, scale)."""
        ...

    def infer(self, prepared: Any) -> Any:
        """Run the model on a prepared input (blocking)."""
        ...

    def infer_async(self, prepared: Any) -> Future[Any]:
        """Start the model on a prepared input; the future holds what ``infer`` returns."""
        ...

    def postprocess(self, raw: Any, prepared: Any) -> list[Detection]:
        """Boxes in frame pixels: faces, or eyes when the prepared mode is ``eyes``."""
        ...

    def close(self) -> None:
        """Release workers and compiled models."""
        ...


def detect(detector: Detector, frame: np.ndarray, mode: Mode = "face") -> list[Detection]:
    """All three stages, synchronously, on one frame."""
    prepared = detector.preprocess(frame, mode)
    return detector.postprocess(detector.infer(prepared), prepared)
