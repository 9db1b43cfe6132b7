"""Frame sources (inference_vm.sources): newest frame, dropped count, reconnection (fakes)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

pytest.importorskip("cv2")

from inference_vm.config import SourceConfig
from inference_vm.sources import FrameSource, describe


class FakeCapture:
    """Yields ``frames`` frames (then fails), or fails to open when ``frames`` is None."""

    def __init__(self, frames: int | None, gate: threading.Event | None = None) -> None:
        self.frames, self.gate, self.read_count = frames, gate, 0

    def isOpened(self) -> bool:
        return self.frames is not None

    def get(self, prop: int) -> float:
        return 0.0

    def read(self) -> tuple[bool, Any]:
        if self.gate is not None:
            self.gate.wait(5)
        if self.frames is None or self.read_count >= self.frames:
            return False, None
        self.read_count += 1
        return True, np.full((4, 4, 3), self.read_count, np.uint8)

    def release(self) -> None:
        pass


def stream_config() -> SourceConfig:
    return SourceConfig(url="rtsp://127.0.0.1:1/x", reconnect_initial_s=0.01, reconnect_max_s=0.04)


def test_source_kind_is_told_from_the_url() -> None:
    kinds = [describe(u) for u in ("rtsp://h/s", "/dev/video0", "v4l2:1", "a.avi", "http://h/")]
    assert kinds == ["rtsp", "v4l2", "v4l2", "file", "http"]


def test_unread_frames_are_dropped_and_the_newest_is_handed_out() -> None:
    gate = threading.Event()
    opened: list[FakeCapture] = []

    def opener(_config: SourceConfig) -> FakeCapture:  # 5 frames, then the stream stays away
        opened.append(FakeCapture(5 if not opened else None, gate))
        return opened[-1]

    source = FrameSource(stream_config(), opener=opener).start()
    gate.set()
    while source.stats.frames_read < 5:
        threading.Event().wait(0.01)
    frame = source.latest(timeout=5)
    source.stop()
    assert frame is not None and frame.number == 5
    assert source.stats.frames_dropped == 4


def test_lost_stream_is_reopened_with_backoff_until_frames_come_again() -> None:
    attempts: list[FakeCapture] = []

    def opener(_config: SourceConfig) -> FakeCapture:
        capture = FakeCapture(3 if len(attempts) in (0, 4) else None)
        attempts.append(capture)
        return capture

    source = FrameSource(stream_config(), opener=opener).start()
    first = source.latest(timeout=5)
    later = source.latest(after=3, timeout=10)
    source.stop()
    assert first is not None and later is not None and later.number > 3
    assert source.stats.reconnects >= 4
