"""The UI's guard rails: session key, cookie flags, CSRF on every POST, who is logged in,
roles checked on the server for every view, security headers, login throttling per IP.

Every request to the ``ui`` blueprint passes :func:`guard` first:

    POST without a valid CSRF token (and same-origin Referer over HTTPS) → 400
    no live session                                                      → login page
    POST by a viewer (whatever the view)                                 → 403
    view needing a higher role (:func:`requires`)                        → 403

Large uploads (``LARGE_UPLOADS``: the image upload) are checked before a byte of their
body is read: session (401), role (403), and the CSRF token from the query string or the
``X-CSRFToken`` header (400); only then is the body limit raised from the device cap to
the image cap.  Every other body is capped at the device cap (1 MiB) while unauthenticated.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, Request, abort, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect, same_origin, validate_csrf
from werkzeug.wrappers import Response
from wtforms import ValidationError

from attestation.files import atomic_write
from controller.domain.users import SESSION_TTL, has_role, session_user
from controller.web.context import current_services

__all__ = [
    "KEY_FILE",
    "CurrentUser",
    "configure",
    "csrf",
    "ensure_secret_key",
    "guard",
    "ip_limiter",
    "requires",
    "safe_next",
    "secure_headers",
]

log = logging.getLogger(__name__)
KEY_FILE = "ui-session.key"
PUBLIC_ENDPOINTS = {"ui.login", "ui.static", "ui.invite_accept"}
F = TypeVar("F", bound=Callable[..., Any])
csrf = CSRFProtect()
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class CurrentUser:
    id: int
    username: str
    role: str

    def can(self, role: str) -> bool:
        return has_role(self.role, role)


def ensure_secret_key(data_dir: Path) -> bytes:
    """The session signing key: made once (``init``, or first start) in the data dir, 0600."""
    path = data_dir / KEY_FILE
    if not path.exists():
        atomic_write(path, secrets.token_hex(32).encode(), mode=0o600)
    return path.read_bytes().strip()


class UiOnlySessions(SecureCookieSessionInterface):
    """The signed session cookie is read only for the UI's pages: the APIs authenticate
    each request (tokens, signed envelopes) and never pay for a session."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith("/ui"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def configure(app: Flask, data_dir: Path) -> None:
    app.secret_key = ensure_secret_key(data_dir)
    app.session_interface = UiOnlySessions()
    app.config.update(
        SESSION_COOKIE_NAME="outpost_session",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_TTL,
        WTF_CSRF_CHECK_DEFAULT=False,  # only the UI's forms; the APIs use tokens/signatures
        WTF_CSRF_TIME_LIMIT=None,  # bound to the session, which expires on its own
        WTF_CSRF_SSL_STRICT=True,
    )
    csrf.init_app(app)


class IpLimiter:
    """At most ``limit`` failed logins per client address in ``window_s`` (per process)."""

    def __init__(self, limit: int = 20, window_s: float = 300.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, ip: str, now: float) -> deque[float]:
        fails = self._fails.setdefault(ip, deque())
        while fails and fails[0] < now - self.window_s:
            fails.popleft()
        return fails

    def blocked(self, ip: str) -> float:
        """Seconds until ``ip`` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            fails = self._recent(ip, now)
            return fails[0] + self.window_s - now if len(fails) >= self.limit else 0.0

    def failed(self, ip: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(ip, now).append(now)
            if len(self._fails) > 10_000:  # bounded memory under a spray of addresses
                self._fails = {k: v for k, v in self._fails.items() if v}


ip_limiter = IpLimiter()


def _load_user() -> CurrentUser | None:
    token = session.get("sid")
    if not isinstance(token, str):
        return None
    with current_services().db.transaction() as s:
        user = session_user(s, token)
        return CurrentUser(user.id, user.username, user.role) if user else None


LARGE_UPLOADS = {"ui.upload_image": "operator"}
"""Endpoints taking a body larger than the device cap, and the least role they need."""


def _admit_large_upload(role: str) -> None:
    """Session, role and CSRF token of a large upload, all without reading its body;
    then (only then) the body limit is raised."""
    user = _load_user()
    if user is None:
        abort(401)
    if not user.can(role):
        abort(403)
    token = request.args.get("csrf_token") or request.headers.get("X-CSRFToken")
    try:
        validate_csrf(token)
    except ValidationError:
        abort(400, "The CSRF token is missing or invalid.")
    if request.is_secure and not same_origin(request.referrer or "", f"https://{request.host}/"):
        abort(400, "The referrer does not match the host.")
    g.ui_user, g.actor = user, f"user:{user.username}"
    g.csrf_valid = True  # as CSRFProtect.protect() marks it: the form need not check again
    request.max_content_length = current_services().settings.max_image_bytes


def guard() -> Response | None:
    """``before_request`` of the UI blueprint (see the module docstring)."""
    if request.endpoint == "ui.static":
        return None
    if request.method == "POST" and request.endpoint in LARGE_UPLOADS:
        _admit_large_upload(LARGE_UPLOADS[request.endpoint])
        return None
    if request.method == "POST":
        csrf.protect()
    g.ui_user = _load_user()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if g.ui_user is None:
        if request.method == "GET":
            return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
        abort(401)
    g.actor = f"user:{g.ui_user.username}"
    if (
        request.method == "POST"
        and request.endpoint != "ui.logout"
        and not g.ui_user.can("operator")
    ):
        abort(403)
    return None


def requires(role: str) -> Callable[[F], F]:
    """The least role a view needs; checked on the server before the view runs."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            user: CurrentUser | None = g.get("ui_user")
            if user is None:
                abort(401)
            if not user.can(role):
                abort(403)
            return fn(*args, **kwargs)

        inner.__ui_role__ = role  # type: ignore[attr-defined]
        return inner  # type: ignore[return-value]

    return wrap


_SAFE_NEXT = re.compile(r"/ui/[\x21-\x7e]{0,2000}")


def safe_next(target: str | None) -> str:
    """Only a path inside the UI (no scheme, no other host) is followed after login; it
    must be printable ASCII without spaces (no CR/LF header injection into ``Location``)."""
    if target and _SAFE_NEXT.fullmatch(target) and "\\" not in target:
        return target
    return url_for("ui.overview")


def secure_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint != "ui.static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response
