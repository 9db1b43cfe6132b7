"""BlazeFace maths (inference_vm.blazeface): anchors, decode, weighted NMS, letterbox mapping."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from inference_vm import blazeface


def test_anchors_are_the_48x48_grid_centres() -> None:
    anchors = blazeface.anchors()
    assert anchors.shape == (2304, 2)
    assert anchors[0] == pytest.approx((0.5 / 48, 0.5 / 48))
    assert anchors[1] == pytest.approx((1.5 / 48, 0.5 / 48))  # row-major: x moves first
    assert anchors[-1] == pytest.approx((47.5 / 48, 47.5 / 48))


def test_decode_centres_a_box_on_its_anchor_when_offsets_are_zero() -> None:
    anchors = blazeface.anchors()
    regressors = np.zeros((1, 2304, 16), np.float32)
    regressors[0, 100, 2:4] = (48.0, 96.0)  # w, h in input pixels
    logits = np.full((1, 2304, 1), -10.0, np.float32)
    logits[0, 100, 0] = 2.0
    boxes, keypoints, scores = blazeface.decode(regressors, logits, anchors)
    cx, cy = anchors[100]
    assert boxes[100] == pytest.approx((cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25))
    assert keypoints[100, 0] == pytest.approx((cx, cy))
    assert scores[100] == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_weighted_nms_merges_overlapping_boxes_weighted_by_score() -> None:
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0]], np.float32)
    keypoints = np.zeros((2, 6, 2), np.float32)
    scores = np.array([0.9, 0.6], np.float32)
    merged = blazeface.weighted_nms(boxes, keypoints, scores, 0.5, 0.3)
    assert len(merged) == 1
    box, _, score = merged[0]
    assert score == pytest.approx(0.9)
    assert box[0] == pytest.approx(0.1 * 0.6 / 1.5)


def test_weighted_nms_keeps_boxes_that_do_not_overlap() -> None:
    boxes = np.array([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7], [0.0, 0.0, 0.1, 0.1]])
    scores = np.array([0.8, 0.7, 0.2])
    merged = blazeface.weighted_nms(boxes, np.zeros((3, 6, 2)), scores, 0.5, 0.3)
    assert [round(s, 2) for _, _, s in merged] == [0.8, 0.7]


def test_letterbox_maps_model_coordinates_back_to_frame_pixels() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    canvas, box = blazeface.letterbox(frame)
    assert canvas.shape == (192, 192, 3)
    assert (box.pad_x, box.pad_y) == (0, 24)
    centre = blazeface.to_frame(np.array([[0.5, 0.5]], np.float32), box)
    assert centre[0] == pytest.approx((320, 240), abs=1)
