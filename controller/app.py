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
from controller.store.notify import ConfigNotifier
from controller.store.pki import ControllerPki, load_pki
from controller.store.write_behind import WriteBehind
from controller.ui import init_ui
from controller.web import telemetry
from controller.web.converters import register_converters
from controller.web.errors import register_error_handlers
from controller.web.json_provider import StrictJSONProvider

__all__ = ["build_services", "create_app"]

log = logging.getLogger(__name__)


def build_services(settings: ControllerSettings, pki: ControllerPki | None = None) -> Services:
    """The database (schema brought to head), PKI, notifier and the write-behind thread."""
    notifier = ConfigNotifier(settings.database_url, max_waiters=settings.max_parked_polls)
    db = Database(settings.database_url, notifier)
    db.create_schema()
    services = Services(
        settings=settings,
        db=db,
        pki=pki or load_pki(settings.pki_dir),
        notifier=notifier,
        writes=WriteBehind(),
    )
    threading.Thread(
        target=services.writes.run, args=(db, threading.Event()), name="write-behind", daemon=True
    ).start()
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
