"""``outpost-controller serve``: the controller on gunicorn with gevent workers.

Why gevent workers (measured, docs/benchmarks.md "Production serving"): a parked long-poll
is a greenlet of a few KB instead of an OS thread (Werkzeug's development server) or a
whole sync worker; the Flask app and SQLAlchemy stay as they are (psycopg 3 cooperates
with gevent, SQLite calls are short and local).

    one process per core (PostgreSQL) or one process (SQLite: its long-poll wake-ups
    are in-process), each serving up to ``max_connections`` connections at once;
    keep-alive; TLS with the controller's own certificate, or plain HTTP behind a
    TLS-terminating load balancer (``--plain-http``);
    a deadline per request (longer for long-polls and uploads), 503 when it passes;
    SIGTERM: stop accepting, answer parked long-polls "unchanged" at once, finish the
    requests in flight (``graceful_timeout``), exit; SIGHUP: new workers, then the old
    ones stop gracefully (gunicorn's reload).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.ggevent import GeventWorker
from werkzeug.middleware.proxy_fix import ProxyFix

from controller.background import REPLICA_ENV, replica_id
from controller.settings import ControllerSettings

__all__ = ["OutpostWorker", "ServeOptions", "serve"]

log = logging.getLogger(__name__)

LONG_POLL_PATH = "/api/v1/device/config"
REMOTE_POLL_PATH = "/api/v1/remote/device/poll"
REMOTE_STREAM_PREFIX = "/api/v1/remote/s/"
"""Remote-access WebSockets: a session lasts as long as its grant allows (no deadline)."""
UPLOAD_PATHS = (
    "/api/v1/images",
    "/api/v1/agent-releases",
    "/ui/images/upload",
    "/api/v1/nodes/import",  # a manufacturing manifest: 100,000 rows take tens of seconds
)
MAX_LONG_POLL_S = 120.0
"""protocol.messages.ConfigRequest.wait_s's upper bound."""


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 0
    """0: one per core on PostgreSQL, one on SQLite."""
    plain_http: bool = False
    """Serve HTTP (a load balancer in front terminates TLS)."""
    trusted_proxies: int = 0
    """How many proxies in front set X-Forwarded-For/-Proto (0: trust none)."""
    max_connections: int = 20000
    """Connections one worker serves at once (parked long-polls included)."""
    request_timeout_s: float = 30.0
    upload_timeout_s: float = 3600.0
    graceful_timeout_s: float = 15.0
    keepalive_s: float = 75.0
    background: bool = True
    log_level: str = "info"


def worker_count(settings: ControllerSettings, options: ServeOptions) -> int:
    if not settings.database_url.startswith("postgresql"):
        return 1  # SQLite: one process, whose commits wake its own long-polls
    return options.workers or (os.cpu_count() or 1)


MAX_BLOCKING_S = 2.0
"""An event loop blocked this long is reported (with the blocking greenlet's stack)."""


class RequestDeadline:
    """WSGI middleware: a deadline per request (``gevent.Timeout``), 503 once it passes.

    The deadline covers the app's handling, not the streaming of a response body (image
    downloads take as long as they take)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], options: ServeOptions) -> None:
        self.app = app
        self.options = options

    def _deadline(self, environ: dict[str, Any]) -> float | None:
        path = environ.get("PATH_INFO", "")
        if path.startswith(REMOTE_STREAM_PREFIX):
            return None
        if path in (LONG_POLL_PATH, REMOTE_POLL_PATH):
            return MAX_LONG_POLL_S + self.options.request_timeout_s
        if environ.get("REQUEST_METHOD") == "POST" and path in UPLOAD_PATHS:
            return self.options.upload_timeout_s
        return self.options.request_timeout_s

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        import gevent

        deadline = self._deadline(environ)
        if deadline is None:
            return self.app(environ, start_response)
        try:
            with gevent.Timeout(deadline):
                return self.app(environ, start_response)
        except gevent.Timeout:
            log.warning(
                "request %s %s passed its %.0f s deadline",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                deadline,
            )
            body = (
                b'{"error":{"code":"timeout","message":"the request took longer than'
                b' the controller allows"}}'
            )
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]


_UNPARSED_CODES = {
    400: "malformed_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    501: "not_implemented",
}


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request it could not parse (a request line over 4 KiB, too
    many or too large headers, a bad chunk), as JSON like every other error of the API:
    gunicorn's own is an HTML page. gunicorn has no hook for it: its workers call
    ``gunicorn.util.write_error``, replaced below."""
    code = _UNPARSED_CODES.get(status_int, "server_error" if status_int >= 500 else "bad_request")
    body = json.dumps({"error": {"code": code, "message": (mesg or reason)[:500]}}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn_util.write_error = write_json_error


class OutpostWorker(GeventWorker):  # type: ignore[misc]  # gunicorn has no type information
    """gunicorn's gevent worker; on SIGTERM it also releases the parked long-polls, so a
    graceful stop does not wait for them (they answer "unchanged" and nodes poll again),
    and closes the keep-alive connections that sit between two requests, at once and
    after the answer of each request in flight (gunicorn would wait for each to time out,
    so every stop took the whole graceful timeout while a balancer or an agent held a
    connection open). Requests in flight still finish.

    Which connections are idle is known without a race: gevent is cooperative, and a
    request is marked busy before its handler yields for the first time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: dict[Any, bool] = {}
        """Open client sockets → busy with a request."""

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        self._connections[client] = False
        try:
            super().handle(listener, client, addr)
        finally:
            self._connections.pop(client, None)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        self._connections[sock] = True
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            if sock in self._connections:
                self._connections[sock] = False
            if not self.alive:  # stopping: this answer (sent whole) was the last on it
                _close_idle(sock)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        flask_app = getattr(self.app, "flask_app", None)
        if flask_app is not None:
            flask_app.extensions["outpost"].notifier.release_waiters()
        for sock, busy in list(self._connections.items()):
            if not busy:
                _close_idle(sock)


def _close_idle(sock: Any) -> None:
    """End a keep-alive connection that waits for its next request."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _flush_on_exit(server: Any, worker: Any) -> None:
    """A worker that stops writes the last-seen times and metrics it still holds."""
    flask_app = getattr(worker.app, "flask_app", None)
    if flask_app is not None:
        services = flask_app.extensions["outpost"]
        try:
            services.writes.flush(services.db)
        except Exception:
            log.exception("could not write the last-seen times and metrics at exit")


class _Application(BaseApplication):  # type: ignore[misc]  # gunicorn has no type information
    def __init__(self, settings: ControllerSettings, options: ServeOptions) -> None:
        self.settings = settings
        self.options = options
        self.flask_app: Flask | None = None
        super().__init__()

    def load_config(self) -> None:
        o = self.options
        cfg = {
            "bind": [f"{o.host}:{o.port}"],
            "workers": worker_count(self.settings, o),
            "worker_class": "controller.server.OutpostWorker",
            "worker_connections": o.max_connections,
            "keepalive": int(o.keepalive_s),
            "timeout": 60,  # a worker silent this long (blocked event loop) is replaced
            "graceful_timeout": int(o.graceful_timeout_s),
            "preload_app": False,  # the app (and its threads) is built in each worker
            "loglevel": o.log_level,
            "errorlog": "-",
            "accesslog": None,
            "proc_name": "outpost-controller",
            "worker_exit": _flush_on_exit,
            "child_exit": _worker_gone,
        }
        if not o.plain_http:
            cfg["certfile"] = str(self.settings.pki_dir / "tls.pem")
            cfg["keyfile"] = str(self.settings.pki_dir / "tls.key")
        for key, value in cfg.items():
            self.cfg.set(key, value)

    def load(self) -> Callable[..., Any]:
        from controller.app import create_app

        app = create_app(self.settings, background=self.options.background)
        self.flask_app = app
        wsgi: Callable[..., Any] = app.wsgi_app
        if self.options.trusted_proxies:
            n = self.options.trusted_proxies
            wsgi = ProxyFix(wsgi, x_for=n, x_proto=n, x_host=n)
        app.wsgi_app = RequestDeadline(wsgi, self.options)  # type: ignore[method-assign]
        return app


def _metrics_dir(settings: ControllerSettings) -> None:
    """Prometheus' multiprocess mode: each worker counts into files here (emptied at start),
    ``/metrics`` adds them up."""
    path = settings.data_dir / "run" / f"prometheus-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _worker_gone(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def serve(settings: ControllerSettings, options: ServeOptions) -> None:
    """Run until SIGTERM/SIGINT (gunicorn's arbiter: workers, reload on SIGHUP)."""
    scheme = "http" if options.plain_http else "https"
    print(
        f"outpost-controller listening on {scheme}://{options.host}:{options.port}"
        f" ({worker_count(settings, options)} worker(s))",
        flush=True,
    )
    os.environ.setdefault(REPLICA_ENV, replica_id())  # every worker: the same replica
    # gevent's monitor thread (opt-in: GEVENT_MONITOR_THREAD_ENABLE=true): a worker whose
    # event loop is blocked prints which greenlet and where to the error log
    os.environ.setdefault("GEVENT_MAX_BLOCKING_TIME", str(MAX_BLOCKING_S))
    warnings.filterwarnings("ignore", "Unable to monitor memory usage")  # no psutil: fine
    _metrics_dir(settings)
    _Application(settings, options).run()
