"""UI views: users (admin) — add one with a generated password, invite one (a one-time
link, valid 24 h, where they set their own password), set a user's password or role,
delete one; and the public invitation page that link opens.

Passwords and invitation tokens are never logged nor audited: the audit log says
``user.create``, ``user.invited``, ``user.password_set``, ``user.role`` and
``user.delete`` with the
user name and role only."""

from __future__ import annotations

import logging

from flask import abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import delete, select
from werkzeug.wrappers import Response

from controller.domain.invites import NO_PASSWORD, accept_invite, invite_for, invite_user
from controller.domain.tokens import ROLES
from controller.domain.users import UserError, create_user, set_password, set_role
from controller.store.audit import audit
from controller.store.models import User, UserInvite
from controller.ui.blueprint import services, ui
from controller.ui.forms import InviteForm, PasswordForm, UserForm
from controller.ui.security import requires
from controller.web.context import actor

log = logging.getLogger(__name__)


def _users_page(
    form: UserForm, invite: InviteForm, status: int = 200, **shown: str | None
) -> tuple[str, int]:
    with services().db.transaction() as s:
        rows = list(s.scalars(select(User).order_by(User.username)))
        pending = {i.user_id: i.expires_at for i in s.scalars(select(UserInvite))}
        s.expunge_all()
    html = render_template(
        "users.html",
        form=form,
        invite=invite,
        users=rows,
        pending=pending,
        no_password=NO_PASSWORD,
        roles=ROLES,
        **shown,
    )
    return html, status


@ui.route("/users", methods=["GET", "POST"])
@requires("admin")
def users() -> tuple[str, int]:
    form = UserForm()
    password = None
    if form.validate_on_submit():
        try:
            with services().db.transaction() as s:
                password = create_user(s, form.username.data or "", form.role.data or "viewer")
                audit(s, actor(), "user.create", form.username.data or "",
                      after={"role": form.role.data})  # fmt: skip
        except UserError as exc:
            form.username.errors = [*form.username.errors, str(exc)]
        else:
            flash(f"User {form.username.data} created.", "info")
    status = 422 if request.method == "POST" and password is None else 200
    created = form.username.data if password else None
    return _users_page(form, InviteForm(formdata=None), status,
                       password=password, created=created)  # fmt: skip


@ui.post("/users/invite")
@requires("admin")
def users_invite() -> tuple[str, int]:
    """Invite: a user with a role and no password, and a one-time link shown once."""
    invite = InviteForm()
    link = None
    if invite.validate_on_submit():
        name, role = invite.invitee.data or "", invite.invite_role.data or "viewer"
        try:
            with services().db.transaction() as s:
                token = invite_user(s, name, role, actor())
                audit(s, actor(), "user.invited", name, after={"role": role})
        except UserError as exc:
            invite.invitee.errors = [*invite.invitee.errors, str(exc)]
        else:
            link = url_for("ui.invite_accept", token=token, _external=True)
            log.info("ui user invited", extra={"user": name})
    status = 200 if link else 422
    return _users_page(UserForm(formdata=None), invite, status,
                       invite_link=link, invited=invite.invitee.data if link else None)  # fmt: skip


@ui.route("/users/<id:user_id>/password", methods=["GET", "POST"])
@requires("admin")
def user_password(user_id: int) -> Response | tuple[str, int]:
    """An admin sets a user's password (typed twice); the user's sessions end."""
    form = PasswordForm()
    with services().db.transaction() as s:
        user = s.get(User, user_id)
        if user is None:
            abort(404)
        username = user.username
    if form.validate_on_submit():
        try:
            with services().db.transaction() as s:
                user = s.get(User, user_id)
                assert user is not None
                set_password(s, user, form.password.data or "")
                s.execute(delete(UserInvite).where(UserInvite.user_id == user_id))
                audit(s, actor(), "user.password_set", username)
        except UserError as exc:
            form.password.errors = [*form.password.errors, f"{exc}."]
        else:
            flash(f"Password of {username} set; their sessions ended.", "info")
            return redirect(url_for("ui.users"))
    status = 422 if request.method == "POST" else 200
    return render_template("user_password.html", form=form, username=username), status


@ui.route("/invite/<token>", methods=["GET", "POST"])
def invite_accept(token: str) -> Response | tuple[str, int]:
    """The invitee's page (no login): set the password once; the link is dead after."""
    if g.ui_user is not None:
        if request.method == "POST":
            abort(403)
        return render_template("invite.html", form=None, username=None, busy=True), 200
    form = PasswordForm()
    with services().db.transaction() as s:
        invite = invite_for(s, token)
        user = s.get(User, invite.user_id) if invite else None
        username = user.username if user else None
    if username is None:
        return render_template("invite.html", form=None, username=None, busy=False), 404
    if form.validate_on_submit():
        try:
            with services().db.transaction() as s:
                accept_invite(s, token, form.password.data or "")
                audit(s, f"user:{username}", "user.password_set", username, via="invitation")
        except UserError as exc:
            form.password.errors = [*form.password.errors, f"{exc}."]
        else:
            flash("Your password is set. Log in with it.", "info")
            return redirect(url_for("ui.login"))
    status = 422 if request.method == "POST" else 200
    return render_template("invite.html", form=form, username=username, busy=False), status


@ui.post("/users/<id:user_id>/role")
@requires("admin")
def user_role(user_id: int) -> Response:
    """Change a user's role (not one's own: another admin does that)."""
    role = request.form.get("role", "")
    try:
        with services().db.transaction() as s:
            user = s.get(User, user_id)
            if user is None:
                abort(404)
            if user.id == g.ui_user.id:
                raise UserError("you cannot change your own role")
            before = user.role
            set_role(s, user, role[:32])
            if before != role:
                audit(s, actor(), "user.role", user.username, before={"role": before},
                      after={"role": role})  # fmt: skip
            name = user.username
    except UserError as exc:
        flash(f"Role not changed: {exc}.", "error")
    else:
        flash(f"{name} is now {role}; it applies to their next page.", "info")
    return redirect(url_for("ui.users"))


@ui.post("/users/<id:user_id>/delete")
@requires("admin")
def delete_user(user_id: int) -> Response:
    with services().db.transaction() as s:
        user = s.get(User, user_id)
        if user is None:
            flash("No such user.", "error")
        elif user.id == g.ui_user.id:
            flash("You cannot delete yourself.", "error")
        else:
            audit(s, actor(), "user.delete", user.username, before={"role": user.role})
            s.delete(user)
            flash(f"User {user.username} deleted.", "info")
    return redirect(url_for("ui.users"))
