"""The ``ui`` blueprint object, its request hooks, error pages and template helpers.

Views are added by the sibling ``views_*`` modules; templates live in
``controller/ui/templates``, the hand-written CSS/JS in ``controller/ui/static``.
"""

from __future__ import annotations

import datetime as dt
import shlex
from typing import Any

from flask import Blueprint, flash, g, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from wtforms import Form

from controller.domain import nodes as nodes_actions
from controller.errors import ApiError
from controller.store.models import utcnow
from controller.ui.field_rules import plain_error
from controller.ui.security import guard, secure_headers
from controller.web.context import actor, current_services

__all__ = ["apply_errors", "services", "ui"]

ui = Blueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
ui.before_request(guard)
ui.after_request(secure_headers)

NAV = (
    ("ui.overview", "Overview"),
    ("ui.nodes", "Nodes"),
    ("ui.onboarding", "Onboarding"),
    ("ui.apps", "Apps"),
    ("ui.images", "Images"),
    ("ui.networks", "Networks"),
    ("ui.rollouts", "Rollouts"),
    ("ui.git", "Git"),
    ("ui.audit", "Audit log"),
    ("ui.remote", "Remote"),
)


services = current_services


def unassign_and_flash(serial: str, app_name: str) -> None:
    """Stop running an app on a node (from the node page or the app page); flash the outcome."""
    try:
        with services().db.transaction() as s:
            nodes_actions.unassign(s, actor(), serial, app_name)
    except ApiError as exc:
        flash(exc.message, "error")
    else:
        flash(f"{app_name} removed from {serial}.", "info")


def apply_errors(form: Form, exc: ApiError, fields: dict[str, str] | None = None) -> None:
    """Put the API's field details next to the form's fields (the rest above the form)."""
    fields = fields or {}
    details = exc.details if isinstance(exc.details, list) else []
    placed = False
    for item in details:
        path = str(item.get("field", ""))
        head = path.split(".")[0]
        name = fields.get(path) or fields.get(head) or head
        field = getattr(form, name, None) if name else None
        if field is not None and hasattr(field, "errors") and name != "csrf_token":
            message = plain_error(field.label.text, name, item)
            if message not in field.errors:
                field.errors = [*list(field.errors), message]
        else:
            form.form_errors.append(plain_error(path or "The form", head, item))
        placed = True
    if not placed:
        form.form_errors.append(exc.message)


@ui.app_template_filter("bytes")
def _bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


@ui.app_template_filter("shell")
def _shell(words: Any) -> str:
    """A command as one would type it: each word quoted where the shell needs it."""
    if not isinstance(words, list | tuple):
        return ""
    return shlex.join(str(w) for w in words)


@ui.app_template_filter("ago")
def _ago(value: dt.datetime | None) -> str:
    if value is None:
        return "never"
    secs = int((utcnow() - value).total_seconds())
    if secs < 0:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if secs >= size:
            return f"{secs // size} {unit} ago"
    return f"{secs} s ago"


@ui.app_template_filter("when")
def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


@ui.app_template_filter("clock")
def _clock(value: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return "--:--:--"


@ui.app_template_global("now_clock")
def _now_clock() -> str:
    return utcnow().strftime("%H:%M:%S")


@ui.context_processor
def _context() -> dict[str, Any]:
    return {
        "nav": NAV,
        "user": g.get("ui_user"),
        "endpoint": request.endpoint,
    }


def _error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, message=message), status


@ui.errorhandler(CSRFError)
def _csrf_error(exc: CSRFError) -> tuple[str, int]:
    return _error_page(
        400,
        "Form refused",
        f"The form was not accepted ({exc.description}) Reload the page and try again;"
        " if your session ended, log in again.",
    )


@ui.errorhandler(RequestEntityTooLarge)
def _too_large(_exc: RequestEntityTooLarge) -> tuple[str, int]:
    return _error_page(413, "Upload too large", "The file is larger than this form accepts.")


@ui.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[str, int]:
    return _error_page(exc.status, exc.code.replace("_", " ").capitalize(), exc.message)


@ui.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    messages = {
        401: "You are not logged in.",
        403: "Your role does not allow this.",
        404: "There is nothing here.",
    }
    code = exc.code or 500
    return _error_page(code, exc.name, messages.get(code, exc.description or exc.name))
