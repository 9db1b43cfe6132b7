"""Users in the web UI: an admin sets a password (typed twice, the usual rules) or
invites a user (a one-time link, valid 24 h, never audited nor shown again); the
invitee sets their password once and the link is dead after; non-admins are refused."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from controller.store.models import AuditEvent, User, UserInvite
from tests.fixtures.browser import PASSWORDS, UiClient

NEW = "correct horse battery staple"


def db(ui_app):  # type: ignore[no-untyped-def]
    return ui_app.extensions["outpost"].db


def user_id(ui_app, name: str) -> int:  # type: ignore[no-untyped-def]
    with db(ui_app).transaction() as s:
        return int(s.scalar(select(User.id).where(User.username == name)))  # type: ignore[arg-type]


def audit_rows(ui_app) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    with db(ui_app).transaction() as s:
        rows = list(s.scalars(select(AuditEvent)))
        s.expunge_all()
        return rows


def invite(admin: UiClient, name: str = "dora", role: str = "operator") -> str:
    resp = admin.post("/ui/users/invite", {"invitee": name, "invite_role": role})
    assert resp.status_code == 200, resp.get_data(as_text=True)[-2000:]
    match = re.search(
        r"<code class=\"secret\" data-invite-link>([^<]+)</code>", resp.get_data(as_text=True)
    )
    assert match is not None
    return match.group(1).split("localhost", 1)[-1]


def test_an_admin_sets_a_password_typed_twice_and_the_user_logs_in_with_it(ui_client, ui_app):
    admin = ui_client("admin")
    viewer = ui_client("viewer")
    uid = user_id(ui_app, "viewer1")
    assert "Set password" in admin.get("/ui/users").get_data(as_text=True)
    resp = admin.post(f"/ui/users/{uid}/password", {"password": NEW, "again": NEW})
    assert resp.status_code == 302
    assert UiClient(ui_app).login("viewer1", NEW).status_code == 302
    assert UiClient(ui_app).login("viewer1", PASSWORDS["viewer"]).status_code == 401
    assert viewer.get("/ui/").status_code == 302  # their old session ended
    [event] = [e for e in audit_rows(ui_app) if e.action == "user.password_set"]
    assert event.actor == "user:admin1" and event.target == "viewer1"
    assert NEW not in f"{event.detail}{event.before}{event.after}"


def test_a_bad_new_password_is_refused_next_to_its_field_and_nothing_changes(ui_client, ui_app):
    admin = ui_client("admin")
    uid = user_id(ui_app, "viewer1")
    short = admin.post(f"/ui/users/{uid}/password", {"password": "short", "again": "short"})
    page = short.get_data(as_text=True)
    assert short.status_code == 422 and "at least 12 characters" in page
    assert 'id="password-error"' in page and 'value="short"' not in page  # not shown back
    differ = admin.post(f"/ui/users/{uid}/password", {"password": NEW, "again": NEW + "x"})
    assert differ.status_code == 422 and "The two passwords differ." in differ.get_data(
        as_text=True
    )
    assert UiClient(ui_app).login("viewer1", PASSWORDS["viewer"]).status_code == 302
    assert not [e for e in audit_rows(ui_app) if e.action == "user.password_set"]


def test_a_non_admin_can_neither_set_passwords_nor_invite(ui_client, ui_app):
    uid = user_id(ui_app, "viewer1")
    for role in ("operator", "viewer"):
        client = ui_client(role)
        resp = client.post(f"/ui/users/{uid}/password", {"password": NEW, "again": NEW})
        assert resp.status_code == 403
        resp = client.post("/ui/users/invite", {"invitee": "eve", "invite_role": "admin"})
        assert resp.status_code == 403
    with db(ui_app).transaction() as s:
        assert s.scalar(select(User).where(User.username == "eve")) is None
    assert UiClient(ui_app).login("viewer1", PASSWORDS["viewer"]).status_code == 302


def test_an_invitation_link_sets_the_password_once_and_is_dead_after(ui_client, ui_app):
    admin = ui_client("admin")
    path = invite(admin)
    token = path.rsplit("/", 1)[-1]
    assert "invited, link valid until" in admin.get("/ui/users").get_data(as_text=True)
    assert UiClient(ui_app).login("dora", "").status_code in (401, 422)
    guest = UiClient(ui_app)
    assert "Welcome, dora" in guest.get(path).get_data(as_text=True)
    bad = guest.post(path, {"password": NEW, "again": "other one entirely"})
    assert bad.status_code == 422 and "The two passwords differ." in bad.get_data(as_text=True)
    assert guest.post(path, {"password": NEW, "again": NEW}).status_code == 302
    assert UiClient(ui_app).login("dora", NEW).status_code == 302
    with db(ui_app).transaction() as s:
        assert s.scalar(select(User.role).where(User.username == "dora")) == "operator"
    again = UiClient(ui_app)
    assert again.get(path).status_code == 404
    assert again.post(path, {"password": "x" * 20, "again": "x" * 20}).status_code == 404
    assert UiClient(ui_app).login("dora", NEW).status_code == 302
    events = audit_rows(ui_app)
    assert ("user.invited", "user:admin1") in [(e.action, e.actor) for e in events]
    assert ("user.password_set", "user:dora") in [(e.action, e.actor) for e in events]
    for e in events:  # the token is never audited
        assert token not in f"{e.target}{e.detail}{e.before}{e.after}"
    with db(ui_app).transaction() as s:
        assert all(token not in i.token_sha256 for i in s.scalars(select(UserInvite)))


def test_an_invitation_link_expires(ui_client, ui_app):
    path = invite(ui_client("admin"), "erin", "viewer")
    with db(ui_app).transaction() as s:
        for row in s.scalars(select(UserInvite)):
            row.expires_at = row.expires_at - dt.timedelta(hours=25)
    guest = UiClient(ui_app)
    page = guest.get(path)
    assert page.status_code == 404 and "expired" in page.get_data(as_text=True)
    assert guest.post(path, {"password": NEW, "again": NEW}).status_code == 404
    assert UiClient(ui_app).login("erin", NEW).status_code == 401


def test_an_invite_is_refused_for_a_taken_name_and_a_logged_in_user_cannot_use_a_link(
    ui_client, ui_app
):
    admin = ui_client("admin")
    resp = admin.post("/ui/users/invite", {"invitee": "viewer1", "invite_role": "viewer"})
    assert resp.status_code == 422 and "exists" in resp.get_data(as_text=True)
    path = invite(admin, "fred", "viewer")
    viewer = ui_client("viewer")
    assert "Log out first" in viewer.get(path).get_data(as_text=True)
    assert viewer.post(path, {"password": NEW, "again": NEW}).status_code == 403
    with db(ui_app).transaction() as s:
        assert s.scalar(select(UserInvite)) is not None


def test_an_admin_changes_a_role_but_not_their_own_and_a_non_admin_cannot(ui_client, ui_app):
    admin = ui_client("admin")
    viewer = ui_client("viewer")
    uid, own = user_id(ui_app, "viewer1"), user_id(ui_app, "admin1")
    assert viewer.post(f"/ui/users/{uid}/role", {"role": "admin"}).status_code == 403
    assert ui_client("operator").post(f"/ui/users/{uid}/role", {"role": "admin"}).status_code == 403
    assert admin.post(f"/ui/users/{uid}/role", {"role": "operator"}).status_code == 302
    assert viewer.get("/ui/apps/new").status_code == 200  # an operator now
    admin.post(f"/ui/users/{own}/role", {"role": "viewer"})
    assert "cannot change your own role" in admin.get("/ui/users").get_data(as_text=True)
    admin.post(f"/ui/users/{uid}/role", {"role": "root"})
    assert "role must be one of" in admin.get("/ui/users").get_data(as_text=True)
    with db(ui_app).transaction() as s:
        roles = dict(s.execute(select(User.username, User.role)).tuples().all())
    assert roles["viewer1"] == "operator" and roles["admin1"] == "admin"
    [event] = [e for e in audit_rows(ui_app) if e.action == "user.role"]
    assert event.actor == "user:admin1" and event.after == {"role": "operator"}


def test_the_last_admin_keeps_the_admin_role(ui_app):
    from controller.domain.users import UserError, set_role

    with db(ui_app).transaction() as s:
        for user in s.scalars(select(User).where(User.role == "admin")):
            if user.username != "admin1":
                set_role(s, user, "viewer")
        last = s.scalar(select(User).where(User.username == "admin1"))
        assert last is not None
        try:
            set_role(s, last, "viewer")
        except UserError as exc:
            assert "last admin" in str(exc)
        else:
            raise AssertionError("the last admin was demoted")
