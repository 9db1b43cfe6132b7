"""A test RTSP server: streams a video file as H.264 at rtsp://HOST:PORT/MOUNT (GStreamer).

Run it with Debian's Python, which has the GObject bindings (python3-gi and
gir1.2-gst-rtsp-server-1.0; the project's venv has not)::

    /usr/bin/python3 inference_vm/rtsp_test_server.py --file video.avi --port 8554

It is run by path, never imported, so it uses only the standard library and ``gi``. Each
client gets its own playback from the start of the file (in real time). It prints
``RTSP-READY rtsp://…`` once listening and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

DEMUXERS = {".avi": "avidemux", ".mp4": "qtdemux", ".mkv": "matroskademux"}


def launch_line(path: str) -> str:
    """The media pipeline: decode the file, re-encode as low-latency H.264, RTP-payload it."""
    suffix = path[path.rfind(".") :].lower()
    demux = DEMUXERS.get(suffix)
    source = f'filesrc location="{path}"'
    decode = f"{source} ! {demux} ! decodebin" if demux else f"{source} ! decodebin"
    return (
        f"( {decode} ! videoconvert ! video/x-raw,format=I420 ! "
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=2000 ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--mount", default="/stream")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.file))
    factory.set_shared(False)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"RTSP-READY rtsp://{args.host}:{args.port}{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
