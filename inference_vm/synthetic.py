"""Synthetic test video: a face picture sliding across a plain background, with its truth.

Used by the tests and the benchmark (the face picture is theirs to supply, e.g. scikit-image's
``astronaut.png``): every frame comes with the affine map (scale, dx, dy) that takes a box
in the picture's pixels to the frame's, so a reference box can follow the motion.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

BACKGROUND = (96, 110, 120)


@dataclass(frozen=True)
class Placement:
    """Where the picture sits in a frame: picture pixel p → frame pixel p * scale + offset."""

    scale: float
    dx: float
    dy: float

    def box(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = box
        s = self.scale
        return (x1 * s + self.dx, y1 * s + self.dy, x2 * s + self.dx, y2 * s + self.dy)


def moving_frames(
    picture: np.ndarray, count: int, size: tuple[int, int] = (640, 480), scale: float = 0.6
) -> Iterator[tuple[np.ndarray, Placement]]:
    """``count`` BGR frames of ``size`` (w, h): the scaled picture moving left→right and back."""
    width, height = size
    small = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ph, pw = small.shape[:2]
    span_x, span_y = max(0, width - pw), max(0, height - ph)
    for i in range(count):
        phase = i / max(1, count - 1)
        triangle = 1 - abs(2 * phase - 1)
        dx, dy = round(span_x * triangle), round(span_y * (0.5 + 0.5 * np.sin(6.283 * phase)) / 2)
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = BACKGROUND
        frame[dy : dy + ph, dx : dx + pw] = small[: height - dy, : width - dx]
        yield frame, Placement(scale, dx, dy)


def write_video(
    path: Path, frames: Iterator[np.ndarray], fps: float, size: tuple[int, int]
) -> Path:
    """Write frames as Motion-JPEG in AVI (OpenCV's FFmpeg and GStreamer both read it)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise OSError(f"cannot write {path}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path
