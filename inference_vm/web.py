"""The app's HTTP side (stdlib server, one thread per client).

``GET /`` page with the annotated stream and live metrics · ``GET /stream.mjpg`` MJPEG
(``multipart/x-mixed-replace``) · ``GET /snapshot.jpg`` · ``GET /metrics`` Prometheus text
· ``GET /api/metrics`` JSON · ``GET|POST /api/mode`` (``{"mode": "face"|"eyes"}``) ·
``GET /healthz`` (200 while the pipeline runs and has produced a frame, else 503).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

log = logging.getLogger(__name__)

BOUNDARY = "outpostframe"
MAX_BODY = 4096
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Outpost inference</title>
<style>body{font-family:sans-serif;margin:1em}img{max-width:100%;border:1px solid #888}
td{padding:0 .6em}button.on{font-weight:bold}</style></head>
<body><h1>Outpost inference</h1>
<p>Mode: <button id="face">face</button> <button id="eyes">eyes</button>
<span id="info"></span></p>
<img src="/stream.mjpg" alt="annotated stream">
<table id="stages"></table>
<script>
async function mode(m){await fetch('/api/mode',{method:'POST',
  headers:{'Content-Type':'application/json'},body:JSON.stringify({mode:m})});refresh();}
for(const m of ['face','eyes']) document.getElementById(m).onclick=()=>mode(m);
async function refresh(){const d=await (await fetch('/api/metrics')).json();
 document.getElementById('info').textContent=`${d.detector} on ${d.device} · ${d.fps} fps · `
   +`${d.detections.last_frame.length} boxes · source ${d.source_kind}`
   +(d.source.connected?'':' (reconnecting)');
 for(const m of ['face','eyes']) document.getElementById(m).className=d.mode==m?'on':'';
 document.getElementById('stages').innerHTML='<tr><th>stage</th><th>p50 ms</th><th>p95 ms</th></tr>'
   +Object.entries(d.stages).map(([k,v])=>`<tr><td>${k}</td><td>${v.p50_ms??''}</td>`
   +`<td>${v.p95_ms??''}</td></tr>`).join('');}
setInterval(refresh,1000);refresh();
</script></body></html>
"""


class Backend(Protocol):
    """What the web side needs from the running app."""

    max_stream_fps: float

    def metrics_json(self) -> dict[str, Any]: ...
    def metrics_text(self) -> str: ...
    def wait_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None: ...
    def get_mode(self) -> str: ...
    def set_mode(self, mode: str) -> None: ...
    def healthy(self) -> bool: ...
    def stopping(self) -> bool: ...


class _Handler(BaseHTTPRequestHandler):
    backend: Backend
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/metrics":
            text = self.backend.metrics_text().encode()
            self._send(200, text, "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/api/metrics":
            self._json(200, self.backend.metrics_json())
        elif path == "/api/mode":
            self._json(200, {"mode": self.backend.get_mode()})
        elif path == "/healthz":
            ok = self.backend.healthy()
            self._send(200 if ok else 503, b"ok\n" if ok else b"starting\n", "text/plain")
        elif path == "/snapshot.jpg":
            found = self.backend.wait_jpeg(0, 5.0)
            if found is None:
                self._json(503, {"error": "no frame yet"})
            else:
                self._send(200, found[1], "image/jpeg")
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._json(404, {"error": f"no such path {path}"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/api/mode":
            self._json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(413, {"error": "body too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            self.backend.set_mode(body["mode"])
        except (ValueError, KeyError, TypeError) as exc:
            self._json(422, {"error": f'expected {{"mode": "face"|"eyes"}}: {exc}'})
            return
        self._json(200, {"mode": self.backend.get_mode()})

    def _stream(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        last, period = 0, 1.0 / self.backend.max_stream_fps
        try:
            while not self.backend.stopping():
                started = time.monotonic()
                found = self.backend.wait_jpeg(last, 5.0)
                if found is None:
                    continue
                last, jpeg = found
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                head += f"Content-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
                time.sleep(max(0.0, period - (time.monotonic() - started)))
        except (BrokenPipeError, ConnectionResetError):
            log.debug("MJPEG client %s left", self.address_string())


class WebServer:
    """The HTTP server on its own thread."""

    def __init__(self, backend: Backend, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"backend": backend})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="web", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
