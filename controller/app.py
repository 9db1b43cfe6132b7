"""The Flask application factory: binds settings, database and PKI; registers blueprints."""

from __future__ import annotations

import logging
import threading

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from controller.api.attest import attest_api
from controller.api.datastore import datastore
from controller.api.device import device_api
from controller.api.device_reports import device_reports
from controller.api.metrics import metrics_api
from controller.api.operator.api import ops_api
from controller.api.operator.trust import ops_trust_api
from controller.api.remote import remote_api
from controller.api.remote_stream import remote_stream_api
from controller.background import start_jobs
from controller.services import Services
from controller.settings import ControllerSettings
from controller.store.database import Database
from controller.store.key_files import DOWNLOAD_KEY_FILE, ensure_key_file
from controller.store.notify import ConfigNotifier
from controller.store.pki import ControllerPki, LivePki, load_pki
from controller.store.write_behind import WriteBehind
from controller.ui import init_ui
from controller.web import telemetry
from controller.web.body import read_small_json_body
from controller.web.converters import register_converters
from controller.web.errors import register_error_handlers
from controller.web.json_provider import StrictJSONProvider

__all__ = ["build_services", "close_app", "create_app"]

log = logging.getLogger(__name__)


def build_services(settings: ControllerSettings, pki: ControllerPki | None = None) -> Services:
    """The database (schema brought to head), PKI (reloaded when another replica rotates
    the signing key), EK CA bundle, download-URL key, notifier and the write-behind thread."""
    notifier = ConfigNotifier(settings.database_url, max_waiters=settings.max_parked_polls)
    db = Database(settings.database_url, notifier)
    db.create_schema()
    if not settings.ek_ca_bundle:
        log.warning("no EK CA bundle is set: no TPM can enrol (init --ek-ca-bundle)")
    services = Services(
        settings=settings,
        db=db,
        keys=LivePki(settings.pki_dir, pki or load_pki(settings.pki_dir)),
        notifier=notifier,
        writes=WriteBehind(),
        ek_bundle=settings.load_ek_bundle(),
        download_key=ensure_key_file(settings.data_dir / DOWNLOAD_KEY_FILE),
    )
    services.writes.start(db)
    return services


def create_app(
    settings: ControllerSettings, pki: ControllerPki | None = None, background: bool = False
) -> Flask:
    """Build the controller app; nothing is created at import time.

    ``background`` starts the periodic jobs (git sync, rollout engine) — ``serve``
    does; tests drive them explicitly."""
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)  # never NaN/Infinity in a response
    register_converters(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_device_body_bytes
    services = build_services(settings, pki)
    app.extensions["outpost"] = services
    register_error_handlers(app)
    app.register_blueprint(device_api)
    app.register_blueprint(device_reports)
    app.register_blueprint(attest_api)
    app.register_blueprint(ops_api)
    app.register_blueprint(ops_trust_api)
    app.register_blueprint(datastore)
    app.register_blueprint(metrics_api)
    telemetry.install(app)
    app.before_request(read_small_json_body)
    app.register_blueprint(remote_api)  # remote access: grants, sessions, recordings
    app.register_blueprint(remote_stream_api)
    init_ui(app)  # web UI at /ui/: session key, cookie flags, CSRF, blueprint

    if background:
        stop = threading.Event()
        app.extensions["outpost-background"] = (stop, start_jobs(services, stop))

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        background = app.extensions.get("outpost-background")
        with services.db.transaction() as s:
            leader = background is not None and background[1].replica_leads(s)
        return jsonify(
            {"status": "ok", "long_polls_parked": services.notifier.waiters, "leader": leader}
        )

    return app


def close_app(app: Flask) -> None:
    """Stop what ``create_app`` started: the background jobs, the write-behind thread
    (after writing what it holds), the notifier's listener and the database connections.
    A process serving one app has its exit do this; a process that builds many (tests,
    tools) calls it for each, or keeps their files and threads open."""
    background = app.extensions.pop("outpost-background", None)
    if background is not None:
        background[0].set()
    services: Services = app.extensions["outpost"]
    services.writes.stop()
    services.notifier.close()
    services.db.engine.dispose()
