"""Outpost's inference app: face (or eye) detection on a camera/RTSP/file stream.

Runs inside the inference VM (or its container variant). A :class:`~inference_vm.sources.
FrameSource` reads frames (reconnecting with back-off, keeping only the newest frame), a
detector behind the :class:`~inference_vm.detection.Detector` protocol finds faces
(BlazeFace through OpenVINO on device ``AUTO``, or OpenCV Haar cascades as the baseline),
the :class:`~inference_vm.pipeline.Pipeline` draws boxes and measures each stage, and
:mod:`inference_vm.web` serves the annotated MJPEG stream, JSON and Prometheus metrics.

``python -m inference_vm --help`` is the entry point.
"""

from inference_vm.config import AppConfig, DetectorConfig, ServerConfig, SourceConfig, load_config
from inference_vm.detection import Detection, Detector

__all__ = [
    "AppConfig",
    "Detection",
    "Detector",
    "DetectorConfig",
    "ServerConfig",
    "SourceConfig",
    "load_config",
]
