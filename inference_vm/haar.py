"""OpenCV Haar cascades (frontal face, eyes): the baseline detector, CPU only.

Faces come from ``haarcascade_frontalface_default``; in ``eyes`` mode each face's upper
part is searched with ``haarcascade_eye`` and the two largest hits are kept. Cascades
report no confidence: every box scores 1.0. ``infer_async`` runs on a small thread pool
(OpenCV releases the GIL while it searches).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from inference_vm.config import Mode
from inference_vm.detection import Detection
from inference_vm.models import HAAR_EYE, HAAR_FACE, haar_cascade

Boxes = list[tuple[int, int, int, int]]
EYE_REGION = 0.6
"""Eyes are searched in this upper fraction of a face box."""


@dataclass(frozen=True)
class Prepared:
    """The equalised grey frame and the mode it is searched in."""

    gray: np.ndarray
    mode: Mode


class HaarDetector:
    """OpenCV's cascades: ``detectMultiScale`` at scale step 1.1, 5 neighbours."""

    name = "haar"

    def __init__(self, min_face: int = 40, requests: int = 2) -> None:
        self.min_face = min_face
        self._face_path = str(haar_cascade(HAAR_FACE))
        self._eye_path = str(haar_cascade(HAAR_EYE))
        self._local = threading.local()  # a CascadeClassifier is not safe to share
        self._pool = ThreadPoolExecutor(max_workers=requests, thread_name_prefix="haar")

    @property
    def device(self) -> str:
        return "opencv-cpu"

    def _cascades(self) -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier]:
        if not hasattr(self._local, "face"):
            self._local.face = cv2.CascadeClassifier(self._face_path)
            self._local.eye = cv2.CascadeClassifier(self._eye_path)
        return self._local.face, self._local.eye

    def preprocess(self, frame: np.ndarray, mode: Mode = "face") -> Prepared:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        return Prepared(cv2.equalizeHist(gray), mode)

    def infer(self, prepared: Prepared) -> tuple[Boxes, Boxes]:
        face_cascade, eye_cascade = self._cascades()
        size = (self.min_face, self.min_face)
        found = face_cascade.detectMultiScale(prepared.gray, 1.1, 5, minSize=size)
        faces: Boxes = [tuple(int(v) for v in box) for box in found]  # type: ignore[misc]
        eyes: Boxes = []
        if prepared.mode == "eyes":
            for x, y, w, h in faces:
                region = prepared.gray[y : y + int(h * EYE_REGION), x : x + w]
                least = max(8, w // 10)
                hits = eye_cascade.detectMultiScale(region, 1.1, 5, minSize=(least, least))
                largest = sorted(hits, key=lambda b: int(b[2]) * int(b[3]), reverse=True)[:2]
                eyes += [(x + int(ex), y + int(ey), int(ew), int(eh)) for ex, ey, ew, eh in largest]
        return faces, eyes

    def infer_async(self, prepared: Prepared) -> Future[tuple[Boxes, Boxes]]:
        return self._pool.submit(self.infer, prepared)

    def postprocess(self, raw: tuple[Boxes, Boxes], prepared: Prepared) -> list[Detection]:
        faces, eyes = raw
        label, boxes = ("eye", eyes) if prepared.mode == "eyes" else ("face", faces)
        return [Detection(label, x, y, x + w, y + h, score=1.0) for x, y, w, h in boxes]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
