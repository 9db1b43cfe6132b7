"""The inference app as a fleet workload: boot → first metrics at the controller, and its fps
inside the VM (TCG) against the same app on this host (same stream, same detector).

    python -m benchmarks.inference_fleet [--host-seconds 40] [--skip-vm]

The VM figures come from ``tests/integration/test_inference_fleet.py`` (run here with
``-s``: the GPU variant of the inference VM as a fleet app, CPU fallback, a 10 fps RTSP
stream of the astronaut video at width 320, OpenVINO face detection); the host figure runs
the same app (``InferenceApp``, device CPU) against the same video served by the same RTSP
server on 127.0.0.1 for ``--host-seconds``. Prints a table; the ratio is VM / host.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
VIDEO_FPS, VIDEO_FRAMES, VIDEO_SIZE = 10, 150, (640, 480)  # tests/fixtures/inference.py


def vm_figures() -> dict[str, float]:
    """Run the fleet test and read what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/integration/test_inference_fleet.py", "-s", "-q",
         "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    out = done.stdout
    if done.returncode != 0:
        raise SystemExit(f"the fleet test failed:\n{out[-4000:]}")
    patterns = {
        "assign_to_metrics_s": r"assign -> fps and detections at the controller: (\d+) s",
        "vm_fps": r"in the VM: ([\d.]+) fps",
        "vm_p50_ms": r"p50 (\d+) ms, p99",
        "vm_p99_ms": r"p99 (\d+) ms",
        "user_data_to_eyes_s": r"user-data changed -> eyes in the metrics: (\d+) s",
    }
    found = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, out)
        found[key] = float(match.group(1)) if match else float("nan")
    return found


def host_fps(seconds: float) -> tuple[float, float]:
    """fps and end-to-end p50 (ms) of the app on this host, steady state over ``seconds``."""
    import cv2
    from skimage import data

    from inference_vm.app import InferenceApp
    from inference_vm.config import load_config
    from inference_vm.synthetic import moving_frames, write_video

    work = Path(tempfile.mkdtemp(prefix="outpost-bench-inf-"))
    picture = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    video = work / "moving.avi"
    frames = (f for f, _ in moving_frames(picture, VIDEO_FRAMES, VIDEO_SIZE))
    write_video(video, frames, VIDEO_FPS, VIDEO_SIZE)
    server = subprocess.Popen(
        [SYSTEM_PYTHON, str(REPO / "inference_vm" / "rtsp_test_server.py"), "--file", str(video),
         "--port", "18554"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert server.stdout is not None and b"RTSP-READY" in server.stdout.readline()
        config = load_config(
            None,
            {
                "source.url": "rtsp://127.0.0.1:18554/stream",
                "source.width": 320,
                "detector.kind": "openvino",
                "detector.mode": "face",
                "detector.device": "CPU",
                "server.port": 0,
            },
        )
        app = InferenceApp(config).start()
        try:
            while app.metrics.frames_processed < 10:
                time.sleep(0.2)
            first, started = app.metrics.frames_processed, time.monotonic()
            time.sleep(seconds)
            done = app.metrics.frames_processed - first
            p50 = app.metrics_json()["stages"]["end_to_end"]["p50_ms"]
            return done / (time.monotonic() - started), float(p50)
        finally:
            app.stop()
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference_fleet")
    parser.add_argument("--host-seconds", type=float, default=40.0)
    parser.add_argument("--skip-vm", action="store_true", help="host figure only")
    args = parser.parse_args()
    print(f"{platform.node()} {platform.processor() or platform.machine()}, {time.ctime()}")
    vm = vm_figures() if not args.skip_vm else {}
    fps, p50 = host_fps(args.host_seconds)
    print("| measure | inference VM (TCG, fleet app) | same app on the host | VM / host |")
    print("|---|---:|---:|---:|")
    if vm:
        print(f"| fps (10 fps stream, width 320, OpenVINO face, CPU) | {vm['vm_fps']:.2f} | "
              f"{fps:.2f} | {vm['vm_fps'] / fps:.3f} |")  # fmt: skip
        print(f"| end-to-end p50 (ms) | {vm['vm_p50_ms']:.0f} | {p50:.0f} | "
              f"{vm['vm_p50_ms'] / p50:.1f} |")  # fmt: skip
        print(f"| assign → fps and detections at the controller (s) | "
              f"{vm['assign_to_metrics_s']:.0f} | | |")  # fmt: skip
        print(f"| user-data face → eyes in the metrics (s) | {vm['user_data_to_eyes_s']:.0f} | | |")
    else:
        print(f"| fps | | {fps:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
