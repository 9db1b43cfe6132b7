"""``python -m inference_vm``: run the app, or detect once on an image (for debugging).

    python -m inference_vm run [--config FILE] [--source URL] [--detector openvino|haar]
                               [--mode face|eyes] [--device AUTO] [--host H] [--port P]
                               [--sync] [--events-url URL]
    python -m inference_vm detect IMAGE [--detector …] [--mode …] [--out annotated.jpg]

``run`` stops cleanly on SIGTERM/SIGINT. ``detect`` prints the boxes as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from inference_vm.config import MODES, load_config

log = logging.getLogger("inference_vm")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference_vm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="serve the annotated stream and metrics (default)")
    once = sub.add_parser("detect", help="detect on one image file and print JSON")
    once.add_argument("image", type=Path)
    once.add_argument("--out", type=Path, help="also write the annotated image here")
    for p in (run, once):
        p.add_argument("--config", type=Path, help="YAML or JSON configuration file")
        p.add_argument("--detector", choices=("openvino", "haar"))
        p.add_argument("--mode", choices=MODES)
        p.add_argument("--device", help="OpenVINO device (AUTO, CPU, GPU)")
        p.add_argument("--model", type=Path, help="BlazeFace .tflite")
        p.add_argument("-v", "--verbose", action="store_true")
    run.add_argument("--source", help="rtsp://…, a video file, /dev/videoN or v4l2:N")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--sync", action="store_true", help="no pipelining (one request at a time)")
    run.add_argument("--events-url", help="POST detection events here")
    run.add_argument(
        "--user-data",
        type=Path,
        help="an Outpost app's user-data file, merged over --config when it exists",
    )
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "detector.kind": args.detector,
        "detector.mode": args.mode,
        "detector.device": args.device,
        "detector.model": str(args.model) if args.model else None,
    }
    if args.command == "run":
        values |= {
            "source.url": args.source,
            "server.host": args.host,
            "server.port": args.port,
            "detector.async_infer": False if args.sync else None,
            "events.url": args.events_url,
        }
    return values


def _run(args: argparse.Namespace) -> int:
    from inference_vm.app import InferenceApp

    config = load_config(args.config, _overrides(args), args.user_data)
    logging.getLogger().setLevel("DEBUG" if args.verbose else config.log_level)
    if args.user_data is not None:
        found = "found" if args.user_data.is_file() else "absent"
        log.info("user-data %s: %s", args.user_data, found)
    app = InferenceApp(config).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(60):
        snap = app.metrics_json()
        log.info(
            "%.1f fps, %d frames, source %s",
            snap["fps"],
            snap["frames_processed"],
            "up" if snap["source"]["connected"] else "down",
        )
    log.info("stopping")
    app.stop()
    return 0


def _detect(args: argparse.Namespace) -> int:
    import cv2

    from inference_vm.app import make_detector
    from inference_vm.detection import detect
    from inference_vm.pipeline import annotate

    config = load_config(args.config, _overrides(args))
    image = cv2.imread(str(args.image))
    if image is None:
        print(f"error: cannot read {args.image}", file=sys.stderr)
        return 2
    detector = make_detector(config.detector)
    started = time.perf_counter()
    found = detect(detector, image, config.detector.mode)
    elapsed = time.perf_counter() - started
    detector.close()
    print(
        json.dumps(
            {
                "detector": detector.name,
                "device": detector.device,
                "mode": config.detector.mode,
                "ms": round(elapsed * 1000, 2),
                "detections": [d.to_json() for d in found],
            }
        )
    )
    if args.out:
        cv2.imwrite(str(args.out), annotate(image, found, f"{detector.name} {detector.device}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return _run(args) if args.command == "run" else _detect(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
