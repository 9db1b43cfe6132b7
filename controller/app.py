"""The Flask application factory: binds settings, database and PKI; registers blueprints."""

from __future__ import annotations

import logging

from flask import Flask, jsonify

from controller.attest_api import attest_api
from controller.config_notify import ConfigNotifier
from controller.datastore import datastore
from controller.db import Database
from controller.device_api import device_api
from controller.device_reports import device_reports
from controller.errors import register_error_handlers
from controller.ops.api import ops_api
from controller.ops_trust_api import ops_trust_api
from controller.pki_store import ControllerPki, load_pki
from controller.services import Services
from controller.settings import ControllerSettings
from controller.ui import init_ui

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: ControllerSettings, pki: ControllerPki | None = None, background: bool = False
) -> Flask:
    """Build the controller app; nothing is created at import time.

    ``background`` starts the periodic workers (git sync, rollout engine) — ``serve``
    does; tests drive them explicitly."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_device_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    db = Database(settings.database_url)
    db.create_schema()
    app.extensions["outpost"] = Services(
        settings=settings,
        db=db,
        pki=pki or load_pki(settings.pki_dir),
        notifier=ConfigNotifier(settings.database_url),
    )
    register_error_handlers(app)
    app.register_blueprint(device_api)
    app.register_blueprint(device_reports)
    app.register_blueprint(attest_api)
    app.register_blueprint(ops_api)
    app.register_blueprint(ops_trust_api)
    app.register_blueprint(datastore)
    init_ui(app)  # web UI at /ui/: session key, cookie flags, CSRF, blueprint

    if background:
        start_background(app)

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ok"})

    return app


def start_background(app: Flask) -> None:
    """The periodic git sync and the rollout engine's tick, as daemon threads."""
    import threading

    from controller.gitops.worker import start_git_worker
    from controller.rollouts.worker import start_rollout_worker

    stop = threading.Event()
    app.extensions["outpost-background"] = stop
    start_git_worker(app, stop)
    start_rollout_worker(app, stop)
