"""BlazeFace (MediaPipe, full range) maths in numpy: letterbox, SSD anchors, decode, weighted NMS.

No inference here: :mod:`inference_vm.openvino_detector` runs the model and calls these.
The constants follow MediaPipe's ``face_detection_full_range_common.pbtxt``: a 192x192
input, one SSD layer of stride 4 (48x48 anchors of fixed size 1), 16 regressor values per
anchor (box centre, size, then 6 keypoints: right eye, left eye, nose, mouth, right ear,
left ear — the subject's sides), all scaled by 192 and relative to the anchor centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SIZE = 192
STRIDES = (4,)
ANCHOR_OFFSET = 0.5
NUM_KEYPOINTS = 6
RAW_SCORE_LIMIT = 80.0
EYE_KEYPOINTS = (0, 1)
EYE_BOX_FRACTION = 0.22
"""An eye box is this fraction of the face width on each side."""


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the square model input (to map boxes back)."""

    scale: float
    pad_x: int
    pad_y: int
    width: int
    height: int


def letterbox(frame: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """Resize ``frame`` into a ``size``x``size`` canvas keeping its aspect ratio, centred."""
    height, width = frame.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, frame.shape[2]), dtype=frame.dtype)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Letterbox(scale, pad_x, pad_y, width, height)


def anchors(size: int = INPUT_SIZE, strides: tuple[int, ...] = STRIDES) -> np.ndarray:
    """SSD anchor centres ``(N, 2)`` in [0, 1], row-major per layer (fixed size, one per cell)."""
    centres = []
    for stride in strides:
        cells = size // stride
        grid = (np.arange(cells, dtype=np.float32) + ANCHOR_OFFSET) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        centres.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
    return np.concatenate(centres).astype(np.float32)


def decode(
    regressors: np.ndarray, logits: np.ndarray, anchor_centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs → ``boxes (N, 4)`` x1 y1 x2 y2, ``keypoints (N, 6, 2)``, ``scores (N,)``.

    Coordinates are relative to the model input (0..1).
    """
    points = regressors.reshape(-1, 2 + NUM_KEYPOINTS, 2) / INPUT_SIZE
    centre = points[:, 0] + anchor_centres
    half = points[:, 1] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = points[:, 2:] + anchor_centres[:, None, :]
    raw = np.clip(logits.reshape(-1).astype(np.float32), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
    scores = 1.0 / (1.0 + np.exp(-raw))
    return boxes, keypoints, scores


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    score_threshold: float,
    iou_threshold: float,
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted NMS: each cluster (IoU > threshold with its best box) becomes the
    score-weighted mean of its boxes and keypoints, scored as its best member.
    """
    valid = (scores >= score_threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    order = np.flatnonzero(valid)
    order = order[np.argsort(-scores[order], kind="stable")]
    merged = []
    while order.size:
        top = order[0]
        joins = _iou_one_to_many(boxes[top], boxes[order]) > iou_threshold
        joins[0] = True  # the best box always leads its own cluster
        cluster, order = order[joins], order[~joins]
        weights = scores[cluster] / scores[cluster].sum()
        box = (boxes[cluster] * weights[:, None]).sum(axis=0)
        points = (keypoints[cluster] * weights[:, None, None]).sum(axis=0)
        merged.append((box, points, float(scores[top])))
    return merged


def to_frame(values: np.ndarray, box: Letterbox, size: int = INPUT_SIZE) -> np.ndarray:
    """Map relative model-input coordinates (…, 2) back to frame pixels."""
    pixels = values * size - np.array([box.pad_x, box.pad_y], dtype=np.float32)
    pixels = pixels / box.scale
    return np.clip(pixels, 0, [box.width, box.height])


def eye_boxes(
    face: tuple[float, float, float, float], eyes: np.ndarray
) -> list[tuple[float, float, float, float]]:
    """Square boxes around the two eye keypoints, sized from the face width."""
    half = (face[2] - face[0]) * EYE_BOX_FRACTION / 2
    return [(float(x - half), float(y - half), float(x + half), float(y + half)) for x, y in eyes]
