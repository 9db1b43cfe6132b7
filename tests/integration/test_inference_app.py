"""The whole app on real streams: a video file and a GStreamer RTSP server on 127.0.0.1.

Waits are bounded polls on the app's own metrics; nothing asserts on elapsed time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cv2")
pytest.importorskip("openvino")

from inference_vm.app import InferenceApp
from inference_vm.config import load_config
from tests.fixtures.inference import REPO_ROOT

POLL_LIMIT_S = 90.0


def get(app: InferenceApp, path: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    url = f"http://127.0.0.1:{app.web.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def metrics(app: InferenceApp) -> dict[str, Any]:
    return json.loads(get(app, "/api/metrics")[2])


def wait_for(check: Callable[[], bool], what: str, limit: float = POLL_LIMIT_S) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def make_app() -> Iterator[Callable[..., InferenceApp]]:
    apps: list[InferenceApp] = []

    def make(source: str, **overrides: Any) -> InferenceApp:
        values = {
            "source.url": source,
            "server.port": 0,
            "source.read_timeout_s": 3.0,
            "source.open_timeout_s": 3.0,
            "source.reconnect_initial_s": 0.2,
            "source.reconnect_max_s": 1.0,
        } | overrides
        app = InferenceApp(load_config(None, values)).start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop()


def test_file_source_serves_page_metrics_and_mjpeg(make_app, moving_video):
    app = make_app(str(moving_video.path))
    wait_for(lambda: metrics(app)["frames_processed"] >= 5, "5 frames")
    status, headers, page = get(app, "/")
    assert status == 200 and b'src="/stream.mjpg"' in page
    status, headers, text = get(app, "/metrics")
    assert "text/plain" in headers["Content-Type"]
    assert b'outpost_inference_info{detector="openvino",device="CPU",mode="face"' in text
    url = f"http://127.0.0.1:{app.web.port}/stream.mjpg"
    with urllib.request.urlopen(url, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = stream.read(200)
    assert head.startswith(b"--outpostframe\r\nContent-Type: image/jpeg")
    assert get(app, "/healthz")[0] == 200


def test_mode_switch_at_run_time_gives_eye_boxes(make_app, moving_video):
    app = make_app(str(moving_video.path))
    wait_for(lambda: metrics(app)["detections"]["total"].get("face", 0) > 0, "a face")
    request = urllib.request.Request(
        f"http://127.0.0.1:{app.web.port}/api/mode",
        data=b'{"mode": "eyes"}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read()) == {"mode": "eyes"}
    wait_for(lambda: metrics(app)["detections"]["total"].get("eye", 0) >= 2, "eye boxes")
    assert metrics(app)["mode"] == "eyes"


def test_unknown_mode_is_refused_with_422(make_app, moving_video):
    app = make_app(str(moving_video.path), **{"detector.kind": "haar"})
    request = urllib.request.Request(
        f"http://127.0.0.1:{app.web.port}/api/mode", data=b'{"mode": "nose"}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 422
    assert app.pipeline.mode == "face"


def test_detection_events_are_posted_to_the_configured_url(make_app, moving_video):
    received: list[dict[str, Any]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    collector = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{collector.server_port}/events"
        make_app(str(moving_video.path), **{"events.url": url, "events.min_interval_s": 0.2})
        wait_for(lambda: len(received) >= 2, "two events")
    finally:
        collector.shutdown()
    assert received[0]["detector"] == "openvino"
    assert received[0]["detections"][0]["label"] == "face"


def test_cli_detect_prints_the_face_as_json(astronaut, tmp_path: Path):
    import cv2

    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), astronaut)
    done = subprocess.run(
        [sys.executable, "-m", "inference_vm", "detect", str(image), "--detector", "haar"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [d["label"] for d in result["detections"]] == ["face"]


@pytest.mark.slow
def test_rtsp_stream_gives_detections_and_fps(make_app, rtsp_server, moving_video):
    server = rtsp_server(moving_video.path)
    app = make_app(server.url)
    wait_for(lambda: metrics(app)["frames_processed"] >= 20, "20 frames over RTSP")
    snap = metrics(app)
    assert snap["source_kind"] == "rtsp" and snap["source"]["connected"]
    assert snap["detections"]["total"]["face"] >= 15
    assert snap["fps"] > 0


@pytest.mark.slow
def test_rtsp_stream_cut_and_resumed_is_recovered(make_app, rtsp_server, moving_video):
    server = rtsp_server(moving_video.path)
    app = make_app(server.url)
    wait_for(lambda: metrics(app)["frames_processed"] >= 10, "frames before the cut")
    server.stop()
    wait_for(lambda: not metrics(app)["source"]["connected"], "the app to notice the cut")
    cut_at = metrics(app)["frames_processed"]
    server.start()
    wait_for(lambda: metrics(app)["frames_processed"] >= cut_at + 10, "frames after resuming")
    snap = metrics(app)
    assert snap["source"]["connected"] and snap["source"]["reconnects"] >= 1
    assert get(app, "/healthz")[0] == 200
