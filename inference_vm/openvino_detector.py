"""BlazeFace (full range) through OpenVINO: the main detector.

The .tflite is read directly by OpenVINO. Colour conversion and scaling to [-1, 1] are
folded into the compiled model (``PrePostProcessor``), so the host only letterboxes the
frame to 192x192 uint8 BGR. ``infer_async`` uses an ``AsyncInferQueue`` of
``requests`` infer requests; ``infer`` uses one request of its own.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from inference_vm import blazeface
from inference_vm.config import Mode
from inference_vm.detection import Detection
from inference_vm.devices import DeviceChoice, choose_device
from inference_vm.models import blazeface_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A letterboxed 1x192x192x3 uint8 tensor and how to map back to the frame."""

    tensor: np.ndarray
    box: blazeface.Letterbox
    mode: Mode


class OpenVINODetector:
    """BlazeFace on an OpenVINO device (``AUTO``: a GPU when there is one, else the CPU).

    ``throughput`` compiles with OpenVINO's THROUGHPUT hint (several streams, for async
    requests in flight); otherwise with the LATENCY hint (one request as fast as possible).
    """

    name = "openvino"

    def __init__(
        self,
        model: Path | None = None,
        device: str = "AUTO",
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        requests: int = 2,
        throughput: bool = True,
    ) -> None:
        self.model_path = model or blazeface_model()
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        core = ov.Core()
        network = core.read_model(str(self.model_path))
        ppp = PrePostProcessor(network)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().tensor().set_color_format(ColorFormat.BGR)
        ppp.input().model().set_layout(ov.Layout("NHWC"))
        steps = ppp.input().preprocess()
        steps.convert_color(ColorFormat.RGB).convert_element_type(ov.Type.f32)
        steps.mean(127.5).scale(127.5)
        network = ppp.build()
        hint = "THROUGHPUT" if throughput else "LATENCY"
        self.choice = choose_device(device, list(core.available_devices))
        try:
            self._compiled = core.compile_model(
                network, self.choice.device, {"PERFORMANCE_HINT": hint}
            )
        except RuntimeError as exc:  # a GPU listed but unusable (driver, firmware, OpenCL)
            if self.choice.device == "CPU":
                raise
            reason = f"{self.choice.device} failed ({str(exc).splitlines()[0][:120]}): CPU"
            self.choice = DeviceChoice("CPU", reason, True)
            self._compiled = core.compile_model(network, "CPU", {"PERFORMANCE_HINT": hint})
        (log.warning if self.choice.fallback else log.info)("device: %s", self.choice.reason)
        device = self.choice.device
        self._outputs = self._output_indices(self._compiled)
        self._request = self._compiled.create_infer_request()
        self._queue = ov.AsyncInferQueue(self._compiled, requests)
        self._queue.set_callback(self._done)
        self._lock = threading.Lock()
        self._anchors = blazeface.anchors()
        try:
            devices = self._compiled.get_property("EXECUTION_DEVICES")
        except RuntimeError:
            devices = [device]
        self._device = ",".join(devices) if isinstance(devices, list) else str(devices)
        log.info("BlazeFace %s compiled for %s (runs on %s)", self.model_path, device, self._device)

    @staticmethod
    def _output_indices(compiled: Any) -> tuple[int, int]:
        """(regressors, classifiers) output positions, told apart by their last dimension."""
        sizes = [output.get_partial_shape()[-1].get_length() for output in compiled.outputs]
        return sizes.index(16), sizes.index(1)

    @property
    def device(self) -> str:
        return self._device

    @property
    def device_reason(self) -> str:
        """Why this device (the preference, what OpenVINO sees, a fallback)."""
        return self.choice.reason

    def preprocess(self, frame: np.ndarray, mode: Mode = "face") -> Prepared:
        canvas, box = blazeface.letterbox(frame)
        return Prepared(np.ascontiguousarray(canvas[np.newaxis]), box, mode)

    def _results(self, request: Any) -> tuple[np.ndarray, np.ndarray]:
        regress, classify = self._outputs
        return (
            request.get_output_tensor(regress).data.copy(),
            request.get_output_tensor(classify).data.copy(),
        )

    def infer(self, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self._request.infer({0: prepared.tensor})
            return self._results(self._request)

    def _done(self, request: Any, future: Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return  # cancelled while queued (the pipeline is stopping)
        try:
            future.set_result(self._results(request))
        except Exception as exc:  # delivered to whoever waits on the future
            future.set_exception(exc)

    def infer_async(self, prepared: Prepared) -> Future[tuple[np.ndarray, np.ndarray]]:
        future: Future[tuple[np.ndarray, np.ndarray]] = Future()
        self._queue.start_async({0: prepared.tensor}, future)
        return future

    def postprocess(
        self, raw: tuple[np.ndarray, np.ndarray], prepared: Prepared
    ) -> list[Detection]:
        boxes, keypoints, scores = blazeface.decode(raw[0], raw[1], self._anchors)
        found = []
        for box, points, score in blazeface.weighted_nms(
            boxes, keypoints, scores, self.score_threshold, self.nms_threshold
        ):
            corners = blazeface.to_frame(box.reshape(2, 2), prepared.box).ravel()
            pixels = blazeface.to_frame(points, prepared.box)
            face = (float(corners[0]), float(corners[1]), float(corners[2]), float(corners[3]))
            kps = tuple((float(x), float(y)) for x, y in pixels)
            if prepared.mode == "face":
                found.append(Detection("face", *face, score=score, keypoints=kps))
                continue
            eyes = pixels[list(blazeface.EYE_KEYPOINTS)]
            for eye in blazeface.eye_boxes(face, eyes):
                found.append(Detection("eye", *eye, score=score))
        return found

    def close(self) -> None:
        self._queue.wait_all()
