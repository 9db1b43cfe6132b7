"""UI views: log in and log out (user management is in ``views_users``)."""

from __future__ import annotations

import logging

from flask import flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from controller.domain.users import authenticate, end_session, start_session
from controller.store.audit import audit
from controller.store.models import User
from controller.ui.blueprint import services, ui
from controller.ui.forms import LoginForm
from controller.ui.security import ip_limiter, safe_next

log = logging.getLogger(__name__)


@ui.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    if g.ui_user is not None and request.method == "GET":
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        ip = request.remote_addr or "?"
        wait = ip_limiter.blocked(ip)
        if wait:
            form.form_errors.append(f"Too many failed logins from here; try again in {wait:.0f} s.")
            status = 429
        else:
            with services().db.transaction() as s:
                result = authenticate(s, form.username.data or "", form.password.data or "")
                token = start_session(s, result.user) if result.user else None
                user = result.user
                if user is not None:
                    audit(s, f"user:{user.username}", "ui.login", user.username)
                else:
                    _audit_failed_login(s, form.username.data or "", ip, result.retry_after_s)
            if token and user is not None:
                session.clear()  # a fresh session (and CSRF secret) after login
                session.permanent = True
                session["sid"] = token
                log.info("ui login", extra={"user": user.username})
                return redirect(safe_next(request.args.get("next")))
            if result.retry_after_s:
                form.form_errors.append(
                    f"Too many failed logins for this account; try again in"
                    f" {result.retry_after_s:.0f} s."
                )
                status = 429
            else:
                ip_limiter.failed(ip)
                log.info("ui login refused", extra={"ip": ip})
                form.form_errors.append("Unknown username or wrong password.")
                status = 401
    elif request.method == "POST":
        status = 422
    return render_template("login.html", form=form), status


def _audit_failed_login(s: Session, username: str, ip: str, throttled_s: float) -> None:
    """A refused login, audited: the account when it exists (an unknown name is not
    written: it may be a password typed in the wrong field), the client address, and
    whether the account was throttled (no password checked)."""
    known = s.scalar(select(User.username).where(User.username == username[:64]))
    audit(
        s,
        f"ip:{ip}",
        "ui.login_failed",
        known or "(unknown user)",
        reason="throttled" if throttled_s else "wrong password" if known else "unknown user",
    )


@ui.post("/logout")
def logout() -> Response:
    token = session.get("sid")
    if isinstance(token, str):
        with services().db.transaction() as s:
            end_session(s, token)
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("ui.login"))
