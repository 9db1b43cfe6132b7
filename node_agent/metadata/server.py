"""The metadata service: HTTP on 169.254.169.254:80 of every app bridge, one listener per
bridge, answering only that network's apps (run by :class:`~node_agent.metadata.service.
MetadataService` as ``python -m node_agent.metadata.server``, in the node's namespace).

Each listener is bound to its bridge (``SO_BINDTODEVICE``), so a request is answered only
when it arrived on that bridge; the caller is the app whose planned address on that
network is the request's source address (else 403).  The firewall admits port 80 of the
metadata address only from each bridge's own subnet (:mod:`node_agent.network.firewall`);
the outside and other networks never reach a listener.

Paths (``GET``): ``/meta-data`` (JSON), ``/user-data`` (404 when there is none),
``/latest/meta-data/{instance-id,local-hostname,hostname}`` and ``/latest/user-data`` (the
EC2-style spellings cloud tools know).  ``POST /report`` takes an
:class:`~protocol.app_config.AppReport` (at most 8 KiB of JSON) and keeps the latest per
app in ``reports/<uuid>.json``, which the agent forwards in its metrics.

Content comes from the service's directory, re-read when ``config.json`` changes:
``config.json`` = ``{"bridges": {"ob-…": {"network": name, "clients": {ip: app uuid}}}}``,
``apps/<uuid>/meta-data.json`` and ``apps/<uuid>/user-data``.  User-data is never logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from attestation.files import atomic_write
from protocol.app_config import MAX_REPORT_BYTES, METADATA_ADDRESS, METADATA_PORT, AppReport
from protocol.bounded_json import JsonRefused, load_json

__all__ = ["MetadataContent", "main", "serve"]

log = logging.getLogger("node_agent.metadata.server")

_LATEST_KEYS = {"instance-id", "local-hostname", "hostname"}


class MetadataContent:
    """The service's directory, with ``config.json`` cached until its mtime changes."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._clients: dict[str, dict[str, str]] = {}

    def app_for(self, bridge: str, client_ip: str) -> str | None:
        """The app uuid whose address on ``bridge``'s network is ``client_ip``."""
        config = self.dir / "config.json"
        with self._lock:
            try:
                st = config.stat()
                stamp = (st.st_mtime_ns, st.st_size)
                if stamp != self._stamp:
                    data = json.loads(config.read_text())
                    self._clients = {
                        str(b): {str(ip): str(u) for ip, u in v.get("clients", {}).items()}
                        for b, v in data.get("bridges", {}).items()
                    }
                    self._stamp = stamp
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("metadata config unreadable: %s", exc)
                return None
            return self._clients.get(bridge, {}).get(client_ip)

    def meta_data(self, app: str) -> bytes | None:
        return _read(self.dir / "apps" / app / "meta-data.json")

    def user_data(self, app: str) -> bytes | None:
        return _read(self.dir / "apps" / app / "user-data")

    def store_report(self, app: str, report: AppReport) -> None:
        reports = self.dir / "reports"
        reports.mkdir(mode=0o700, exist_ok=True)
        atomic_write(reports / f"{app}.json", report.model_dump_json().encode(), 0o600)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class _Handler(BaseHTTPRequestHandler):
    server: _BridgeServer
    protocol_version = "HTTP/1.1"
    server_version = "outpost-metadata"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s: " + format, self.server.bridge, self.client_address[0], *args)

    def _app(self) -> str | None:
        app = self.server.content.app_for(self.server.bridge, self.client_address[0])
        if app is None:
            self._send(403, b"not an app of this network\n")
        return app

    def _send(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        app = self._app()
        if app is None:
            return
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/":
            self._send(200, b"meta-data\nuser-data\nreport\n")
        elif path in ("/meta-data", "/latest/meta-data.json"):
            self._found(self.server.content.meta_data(app), "application/json")
        elif path in ("/user-data", "/latest/user-data"):
            self._found(self.server.content.user_data(app), "application/octet-stream")
        elif path == "/latest/meta-data":
            self._send(200, "\n".join(sorted(_LATEST_KEYS)).encode() + b"\n")
        elif path.startswith("/latest/meta-data/") and path[18:] in _LATEST_KEYS:
            doc = json.loads(self.server.content.meta_data(app) or b"{}")
            self._found(str(doc.get(path[18:], "")).encode() or None, "text/plain")
        else:
            self._send(404, b"not found\n")

    def _found(self, body: bytes | None, kind: str) -> None:
        if body is None:
            self._send(404, b"not found\n")
        else:
            self._send(200, body, kind)

    def do_POST(self) -> None:
        app = self._app()
        if app is None:
            return
        if self.path.split("?", 1)[0].rstrip("/") != "/report":
            self._send(404, b"not found\n")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, b"Content-Length required\n")
            return
        if not 0 <= length <= MAX_REPORT_BYTES:
            self._send(413, f"a report is at most {MAX_REPORT_BYTES} bytes\n".encode())
            self.close_connection = True
            return
        try:
            data = load_json(self.rfile.read(length), max_bytes=MAX_REPORT_BYTES, max_depth=4)
            report = AppReport.model_validate(data)
        except (JsonRefused, ValueError, ValidationError) as exc:
            self._send(422, f"not a report: {str(exc)[:300]}\n".encode())
            return
        self.server.content.store_report(app, report.model_copy(update={"at": time.time()}))
        self._send(204, b"")


class _BridgeServer(ThreadingHTTPServer):
    """One listener: the metadata address on one bridge only."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 16

    def __init__(self, bridge: str, port: int, content: MetadataContent) -> None:
        self.bridge = bridge
        self.content = content
        super().__init__((METADATA_ADDRESS, port), _Handler)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.bridge.encode())
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = METADATA_ADDRESS, self.server_address[1]


def serve(directory: Path, bridges: list[str], port: int = METADATA_PORT) -> None:
    """Listen on every bridge until SIGTERM."""
    content = MetadataContent(directory)
    servers = [_BridgeServer(bridge, port, content) for bridge in bridges]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    log.info("metadata service on %s:%d of %s", METADATA_ADDRESS, port, ", ".join(bridges))
    stop.wait()
    for server in servers:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node_agent.metadata.server")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--bridge", action="append", default=[], help="ob-…@ifindex")
    parser.add_argument("--port", type=int, default=METADATA_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    bridges = [b.split("@", 1)[0] for b in args.bridge]
    try:
        serve(args.dir, bridges, args.port)
    except OSError as exc:
        log.error("metadata service: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
