"""The inference app's OCI variant: loaded into podman (runc) and run as a container whose
published port (127.0.0.1 only) serves the metrics of a video it reads from a volume.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.inference import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1800)]

REF = "localhost/outpost/inference:1"
START_LIMIT_S = 240.0


def test_inference_container_serves_metrics_of_a_mounted_video(
    podman_engine, inference_oci_image, moving_video, tmp_path: Path
):
    podman_engine.run("load", "-i", str(inference_oci_image.path))
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "moving.avi").write_bytes(moving_video.path.read_bytes())
    (data / "inference.yaml").write_text(
        "source: {url: /data/moving.avi}\nserver: {host: 0.0.0.0, port: 8080}\n"
    )
    port = free_port()
    name = f"inference-{port}"
    podman_engine.run(
        "run",
        "-d",
        "--name",
        name,
        "--init",
        "-p",
        f"127.0.0.1:{port}:8080",
        "-v",
        f"{data}:/data:ro",
        REF,
        "--config",
        "/data/inference.yaml",
    )
    try:
        snap, deadline = None, time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/metrics", timeout=5) as a:
                    snap = json.loads(a.read())
                if snap["frames_processed"] >= 5:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(1)
        logs = podman_engine.run("logs", name, check=False).stdout
        assert snap is not None and snap["frames_processed"] >= 5, logs[-3000:]
        assert snap["detector"] == "openvino" and snap["detections"]["total"]["face"] >= 1
    finally:
        podman_engine.run("rm", "-f", "-t", "0", name, check=False)
