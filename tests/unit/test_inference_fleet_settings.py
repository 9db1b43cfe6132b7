"""The inference app as a fleet workload: its settings from Outpost user-data, the device it
chooses (and why, falling back to the CPU without a GPU), and the report it posts to the
metadata service."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from inference_vm.config import ReportConfig, load_config, user_data_config
from inference_vm.devices import choose_device
from inference_vm.fleet_report import FleetReporter, report_document

BASE = "source: {url: /dev/video0}\ndetector: {kind: openvino, mode: face}\nserver: {port: 8080}\n"


def test_user_data_overrides_the_image_config_key_by_key(tmp_path: Path):
    (tmp_path / "inference.yaml").write_text(BASE)
    (tmp_path / "user-data").write_text(
        "#cloud-config\nsource: {url: 'rtsp://10.0.0.1:8554/test'}\n"
        "detector: {mode: eyes, device: GPU, score_threshold: 0.6}\nusers: [ignored]\n"
    )
    config = load_config(tmp_path / "inference.yaml", None, tmp_path / "user-data")
    assert config.source.url == "rtsp://10.0.0.1:8554/test"
    assert (config.detector.kind, config.detector.mode) == ("openvino", "eyes")
    assert (config.detector.device, config.detector.score_threshold) == ("GPU", 0.6)
    assert config.server.port == 8080


def test_user_data_under_an_inference_key_must_be_the_apps_own_settings():
    assert user_data_config("inference: {detector: {kind: haar}}\nruncmd: []\n") == {
        "detector": {"kind": "haar"}
    }
    with pytest.raises(ValueError, match="mapping"):
        user_data_config("inference: [1, 2]")
    with pytest.raises(ValueError, match="mapping"):
        user_data_config("- a list\n")


def test_a_missing_user_data_file_leaves_the_image_config(tmp_path: Path):
    (tmp_path / "inference.yaml").write_text(BASE)
    config = load_config(tmp_path / "inference.yaml", None, tmp_path / "absent")
    assert config.detector.mode == "face"


@pytest.mark.parametrize(
    ("wanted", "available", "device", "fallback"),
    [
        ("GPU", ["CPU"], "CPU", True),
        ("GPU", ["CPU", "GPU"], "GPU", False),
        ("GPU.1", ["CPU", "GPU.0"], "CPU", True),
        ("AUTO", ["CPU"], "CPU", False),
        ("AUTO", ["CPU", "GPU.0", "GPU.1"], "AUTO", False),
        ("CPU", ["CPU", "GPU"], "CPU", False),
    ],
)
def test_the_device_follows_the_preference_and_what_openvino_sees(
    wanted, available, device, fallback
):
    choice = choose_device(wanted, available)
    assert (choice.device, choice.fallback) == (device, fallback)
    assert choice.reason


def test_without_a_gpu_the_reason_says_cpu_and_what_was_seen():
    reason = choose_device("GPU", ["CPU"]).reason
    assert reason == "no GPU (OpenVINO sees CPU): falling back to CPU"


SNAPSHOT = {
    "fps": 7.25,
    "frames_processed": 120,
    "stages": {
        "end_to_end": {"p50_ms": 80.0, "p99_ms": 140.5},
        "inference": {"p50_ms": 20.0},
    },
    "detections": {"last_frame": [{"label": "face"}], "total": {"face": 100, "eye": 3}},
    "detector": "openvino",
    "device": "CPU",
    "mode": "face",
    "source_kind": "rtsp",
}


def test_the_report_carries_fps_latency_detections_and_the_device():
    doc = report_document(SNAPSHOT, "no GPU\t(OpenVINO sees CPU): falling back to CPU" + "x" * 80)
    assert doc["values"] == {
        "fps": 7.25,
        "latency_p50_ms": 80.0,
        "latency_p99_ms": 140.5,
        "inference_p50_ms": 20.0,
        "frames_processed": 120.0,
        "detections_last": 1.0,
        "detections_total": 103.0,
    }
    assert doc["labels"]["device"] == "CPU" and doc["labels"]["mode"] == "face"
    reason = doc["labels"]["device_reason"]
    assert len(reason) == 64 and reason.startswith("no GPU?(OpenVINO")


def test_before_the_first_frame_the_report_leaves_latencies_out():
    doc = report_document({"fps": 0.0, "stages": {"end_to_end": {"p50_ms": None}}}, "CPU")
    assert "latency_p50_ms" not in doc["values"] and doc["values"]["fps"] == 0.0


def test_the_reporter_posts_json_and_survives_a_refusal():
    got: list[dict] = []  # type: ignore[type-arg]
    status = [204]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(status[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/report"
        reporter = FleetReporter(ReportConfig(url=url), lambda: SNAPSHOT, "CPU as asked")
        assert reporter.post_once() is True
        status[0] = 422
        assert reporter.post_once() is False
        assert got[0]["labels"]["device_reason"] == "CPU as asked" and len(got) == 2
    finally:
        server.shutdown()
