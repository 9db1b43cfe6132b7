"""Frame sources: RTSP/HTTP streams, video files and V4L2 cameras through ``cv2.VideoCapture``.

A reader thread reads as fast as the source delivers and keeps only the newest frame
(older unread frames are counted as dropped), so the latency stays bounded when the
detector is slower than the camera. When the stream fails (open error, read error or
timeout, end of a non-looping file) the reader releases it and reconnects with
exponential back-off (``reconnect_initial_s`` doubling up to ``reconnect_max_s``, reset
by the next good frame).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference_vm.config import SourceConfig

log = logging.getLogger(__name__)

_V4L2 = re.compile(r"^(?:v4l2:(\d+)|/dev/video(\d+))$")


@dataclass(frozen=True)
class Frame:
    """A frame and when it was read (``time.monotonic()``), numbered from 1."""

    image: np.ndarray
    captured: float
    number: int


@dataclass
class SourceStats:
    """What the reader has seen so far."""

    frames_read: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str = ""


def describe(url: str) -> str:
    """``rtsp``, ``http``, ``v4l2`` or ``file``: the kind of source a URL names."""
    if _V4L2.match(url):
        return "v4l2"
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme if scheme in ("rtsp", "rtsps", "http", "https") else "file"


def open_capture(config: SourceConfig) -> cv2.VideoCapture:
    """Open the configured source with the backend that suits it (FFmpeg, V4L2)."""
    kind = describe(config.url)
    if kind == "v4l2":
        match = _V4L2.match(config.url)
        assert match is not None
        return cv2.VideoCapture(int(match.group(1) or match.group(2)), cv2.CAP_V4L2)
    if kind == "file":
        return cv2.VideoCapture(str(Path(config.url)), cv2.CAP_FFMPEG)
    if kind.startswith("rtsp"):
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{config.rtsp_transport}"
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(config.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(config.read_timeout_s * 1000),
    ]
    return cv2.VideoCapture(config.url, cv2.CAP_FFMPEG, params)


class FrameSource:
    """A source read on its own thread; :meth:`latest` hands out the newest frame."""

    def __init__(self, config: SourceConfig, opener: Any = open_capture) -> None:
        self.config = config
        self.kind = describe(config.url)
        self.stats = SourceStats()
        self._opener = opener
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._taken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-source", daemon=True)

    def start(self) -> FrameSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=max(10.0, self.config.read_timeout_s * 2))

    def latest(self, after: int = 0, timeout: float | None = None) -> Frame | None:
        """The newest frame numbered above ``after``; waits up to ``timeout`` (None: forever).

        Frames read but never handed out are counted in ``stats.frames_dropped``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._stop.is_set():
                frame = self._frame
                if frame is not None and frame.number > after:
                    self.stats.frames_dropped += max(0, frame.number - self._taken - 1)
                    self._taken = frame.number
                    return frame
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
        return None

    def _publish(self, image: np.ndarray) -> None:
        if self.config.width and image.shape[1] != self.config.width:
            height = round(image.shape[0] * self.config.width / image.shape[1])
            image = cv2.resize(image, (self.config.width, height), interpolation=cv2.INTER_AREA)
        with self._cond:
            self.stats.frames_read += 1
            self._frame = Frame(image, time.monotonic(), self.stats.frames_read)
            self._cond.notify_all()

    def _run(self) -> None:
        delay = self.config.reconnect_initial_s
        while not self._stop.is_set():
            try:
                got_frame = self._read_until_failure()
            except Exception as exc:  # a backend error is one more lost connection
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                got_frame = False
            self.stats.connected = False
            if self._stop.is_set():
                break
            if got_frame:
                delay = self.config.reconnect_initial_s
            log.warning(
                "source %s lost (%s); reconnecting in %.1f s",
                self.config.url,
                self.stats.last_error,
                delay,
            )
            self._stop.wait(delay)
            delay = min(delay * 2, self.config.reconnect_max_s)
            self.stats.reconnects += 1

    def _read_until_failure(self) -> bool:
        """Open, read until the source fails; True when at least one frame was read."""
        capture = self._opener(self.config)
        got_frame = False
        try:
            if not capture.isOpened():
                self.stats.last_error = "cannot open"
                return False
            self.stats.connected = True
            log.info("source %s opened (%s)", self.config.url, self.kind)
            is_file = self.kind == "file"
            fps = capture.get(cv2.CAP_PROP_FPS) if is_file else 0.0
            period = 1.0 / fps if self.config.realtime and 0 < fps <= 240 else 0.0
            next_due = time.monotonic()
            since_rewind = 0
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok or image is None:
                    if is_file and self.config.loop and since_rewind:
                        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        since_rewind = 0  # a file that then yields nothing is an error
                        continue
                    self.stats.last_error = "end of file" if is_file else "read failed"
                    return got_frame
                got_frame = True
                since_rewind += 1
                self._publish(image)
                if period:
                    next_due = max(next_due + period, time.monotonic() - 1.0)  # no bursts
                    self._stop.wait(max(0.0, next_due - time.monotonic()))
            return got_frame
        finally:
            capture.release()
