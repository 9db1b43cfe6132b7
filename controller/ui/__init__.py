"""The controller's web UI for fleet operators: server-rendered pages (Flask + Jinja2),
sessions, CSRF on every form, roles checked on the server, a little vendored JS.

    init_ui(app)   session key + cookie flags + CSRF, the ``ui`` blueprint at ``/ui/``,
                   and ``/`` redirecting there

Pages call the same domain actions as the operator API (``controller.domain``) and read
through ``controller.ui.queries``; accounts live in ``controller.domain.users``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, redirect, send_from_directory, url_for
from werkzeug.wrappers import Response

from controller.ui import (
    views_apps,
    views_audit,
    views_auth,
    views_bulk,
    views_delete,
    views_events,
    views_fleet,
    views_git,
    views_logs,
    views_networks,
    views_onboarding,
    views_remote,
    views_rollouts,
    views_trust,
    views_users,
)
from controller.ui.blueprint import ui
from controller.ui.security import configure

__all__ = ["init_ui", "ui"]
STATIC = Path(__file__).with_name("static")
_VIEWS = (  # registers routes
    views_apps,
    views_audit,
    views_auth,
    views_bulk,
    views_delete,
    views_events,
    views_fleet,
    views_git,
    views_logs,
    views_networks,
    views_onboarding,
    views_remote,
    views_rollouts,
    views_trust,
    views_users,
)


def init_ui(app: Flask) -> None:
    """Bind the UI to an app whose ``extensions["outpost"]`` services are set."""
    configure(app, app.extensions["outpost"].settings.data_dir)
    app.register_blueprint(ui)

    def root() -> Response:
        return redirect(url_for("ui.overview"))

    app.add_url_rule("/", "ui_root", root)

    def favicon() -> Response:
        """Browsers ask for /favicon.ico on every page: the UI's icon (SVG), cached."""
        resp = send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml", max_age=86400)
        return resp

    app.add_url_rule("/favicon.ico", "favicon", favicon)
