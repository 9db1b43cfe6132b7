"""Pipeline metrics (inference_vm.metrics): JSON snapshot and Prometheus exposition."""

from __future__ import annotations

import re

import pytest

from inference_vm.metrics import Metrics


def test_prometheus_text_has_info_stage_summary_and_detection_counts() -> None:
    metrics = Metrics(
        info=lambda: {
            "detector": "haar",
            "device": "opencv-cpu",
            "mode": "face",
            "source_kind": "file",
            "source": {"frames_read": 3},
        }
    )
    metrics.observe("inference", 0.010)
    metrics.observe("inference", 0.030)
    metrics.frame_done([{"label": "face", "box": [0, 0, 1, 1], "score": 1.0}])
    text = metrics.prometheus()
    assert 'outpost_inference_info{detector="haar",device="opencv-cpu",mode="face",' in text
    assert re.search(r'^outpost_inference_stage_seconds_count\{stage="inference"\} 2$', text, re.M)
    assert re.search(
        r'^outpost_inference_stage_seconds_sum\{stage="inference"\} 0\.04$', text, re.M
    )
    assert 'outpost_inference_detections_total{label="face"} 1' in text
    assert "outpost_inference_source_frames_read_total 3" in text
    assert "# TYPE outpost_inference_stage_seconds summary" in text


def test_a_slow_device_still_shows_its_fps_and_it_decays_when_frames_stop() -> None:
    metrics = Metrics()
    for i in range(5):
        metrics.frame_done([], now=100.0 + i * 8.0)  # one frame every 8 s (TCG)
    assert metrics.fps(now=132.0) == pytest.approx(4 / 32.0)
    assert metrics.fps(now=164.0) < metrics.fps(now=140.0)
    assert metrics.fps(now=200.0) == 0.0


def test_fps_counts_frames_finished_in_the_window() -> None:
    metrics = Metrics()
    for i in range(11):
        metrics.frame_done([], now=100.0 + i * 0.1)
    assert metrics.fps(now=101.0) == pytest.approx(10.0)
