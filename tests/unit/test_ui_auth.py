"""Web UI security: login, sessions, cookie flags, CSRF, roles on the server, throttling,
the first-admin bootstrap of ``outpost-controller init``."""

from __future__ import annotations

import datetime as dt
import logging
import re
import stat

import pytest
from sqlalchemy import func, select

from controller.cli import _settings
from controller.cli import main as controller_main
from controller.domain.users import (
    FREE_FAILURES,
    authenticate,
    create_user,
    retry_delay_s,
    session_user,
    start_session,
)
from controller.store.models import AuditEvent, Node, UiSession, User, utcnow
from controller.ui.security import KEY_FILE, IpLimiter
from tests.fixtures.browser import PASSWORDS, UiClient


def _db(app):  # type: ignore[no-untyped-def]
    return app.extensions["outpost"].db


def test_every_page_needs_a_login(ui_app):
    client = UiClient(ui_app)
    for path in ("/ui/", "/ui/nodes", "/ui/apps", "/ui/audit", "/ui/onboarding", "/ui/images"):
        resp = client.get(path)
        assert resp.status_code == 302
        assert resp.headers["Location"].startswith("/ui/login?next=")
    assert client.get("/").headers["Location"] == "/ui/"


def test_the_favicon_is_served_to_anyone(ui_app):
    resp = UiClient(ui_app).get("/favicon.ico")
    assert resp.status_code == 200 and resp.mimetype == "image/svg+xml"
    assert b"<svg" in resp.get_data()


def test_login_sets_a_secure_httponly_samesite_session_cookie(ui_app):
    client = UiClient(ui_app)
    client.get("/ui/login")
    resp = client.post("/ui/login", {"username": "admin1", "password": PASSWORDS["admin"]})
    assert resp.status_code == 302 and resp.headers["Location"] == "/ui/"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("outpost_session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax"):
        assert flag in cookie
    assert client.get("/ui/").status_code == 200
    with _db(ui_app).transaction() as s:
        assert s.scalar(select(func.count()).select_from(UiSession)) == 1
        audit = s.scalar(select(AuditEvent).where(AuditEvent.action == "ui.login"))
        assert audit is not None and audit.actor == "user:admin1"


def test_wrong_password_and_unknown_user_get_the_same_answer(ui_app):
    client = UiClient(ui_app)
    client.get("/ui/login")
    bad = client.post("/ui/login", {"username": "admin1", "password": "not-the-password"})
    unknown = client.post("/ui/login", {"username": "nobody", "password": "not-the-password"})
    assert bad.status_code == unknown.status_code == 401
    for resp in (bad, unknown):
        assert "Unknown username or wrong password." in resp.get_data(as_text=True)
    assert client.get("/ui/").status_code == 302


def test_failed_logins_are_audited_without_the_typed_text_of_unknown_names(ui_app):
    client = UiClient(ui_app)
    client.get("/ui/login")
    client.post("/ui/login", {"username": "admin1", "password": "not-the-password"})
    client.post("/ui/login", {"username": "hunter2-typed-here", "password": "x"})
    with _db(ui_app).transaction() as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "ui.login_failed").order_by(AuditEvent.id)
        ).all()
        seen = [(r.target, r.detail["reason"], r.actor.startswith("ip:")) for r in rows]
    assert seen == [("admin1", "wrong password", True), ("(unknown user)", "unknown user", True)]


def test_a_login_after_the_next_parameter_stays_inside_the_ui(ui_app):
    client = UiClient(ui_app)
    client.get("/ui/login")
    creds = {"username": "viewer1", "password": PASSWORDS["viewer"]}
    resp = client.post("/ui/login?next=//evil.example/x", creds)
    assert resp.headers["Location"] == "/ui/"
    client = UiClient(ui_app)
    client.get("/ui/login")
    resp = client.post("/ui/login?next=/ui/audit?action=node.claim", creds)
    assert resp.headers["Location"] == "/ui/audit?action=node.claim"


def test_an_account_is_throttled_after_repeated_failures(ui_app, monkeypatch):
    # the login's clock stands still: a slow machine must not let the delay pass mid-test
    frozen = utcnow()
    monkeypatch.setattr("controller.domain.users.utcnow", lambda: frozen)
    client = UiClient(ui_app)
    client.get("/ui/login")
    for _ in range(FREE_FAILURES + 1):
        client.post("/ui/login", {"username": "operator1", "password": "wrong-password!"})
    resp = client.post("/ui/login", {"username": "operator1", "password": PASSWORDS["operator"]})
    assert resp.status_code == 429
    assert "Too many failed logins for this account" in resp.get_data(as_text=True)
    # once the delay has passed, the right password works and resets the count
    with _db(ui_app).transaction() as s:
        user = s.scalar(select(User).where(User.username == "operator1"))
        later = user.last_failed_at + dt.timedelta(seconds=retry_delay_s(user.failed_logins) + 1)
        assert authenticate(s, "operator1", PASSWORDS["operator"], now=later).user is not None
        assert user.failed_logins == 0


def test_the_delay_grows_and_is_capped():
    assert [retry_delay_s(n) for n in range(FREE_FAILURES)] == [0.0] * FREE_FAILURES
    assert retry_delay_s(FREE_FAILURES) == 1.0
    assert retry_delay_s(FREE_FAILURES + 3) == 8.0
    assert retry_delay_s(100) == 300.0


def test_the_ip_limiter_blocks_a_password_spray():
    limiter = IpLimiter(limit=3, window_s=60)
    for _ in range(3):
        assert limiter.blocked("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") > 0
    assert limiter.blocked("10.0.0.2") == 0


def test_logout_ends_the_session_on_the_server(ui_client, ui_app):
    client = ui_client("operator")
    cookie = client.client.get_cookie("outpost_session", domain="localhost")
    assert cookie is not None
    assert client.post("/ui/logout").headers["Location"] == "/ui/login"
    assert client.get("/ui/").status_code == 302
    # replaying the old cookie does not bring the session back
    replay = UiClient(ui_app)
    replay.client.set_cookie("outpost_session", cookie.value, domain="localhost")
    assert replay.get("/ui/").status_code == 302


def test_sessions_expire_when_idle(ui_app):
    with _db(ui_app).transaction() as s:
        user = s.scalar(select(User).where(User.username == "viewer1"))
        now = dt.datetime(2030, 1, 1)
        token = start_session(s, user, now=now)
        assert session_user(s, token, now=now + dt.timedelta(minutes=30)) is not None
        assert session_user(s, token, now=now + dt.timedelta(hours=5)) is None


def test_a_post_without_csrf_token_is_refused(ui_client, ui_app):
    client = ui_client("admin")
    resp = client.post("/ui/onboarding/claim", {"serial": "sn-csrf"}, csrf=False)
    assert resp.status_code == 400
    assert "Form refused" in resp.get_data(as_text=True)
    resp = client.post("/ui/onboarding/claim", {"serial": "sn-csrf", "csrf_token": "forged"})
    assert resp.status_code == 400
    with _db(ui_app).transaction() as s:
        assert s.scalar(select(Node).where(Node.serial == "sn-csrf")) is None


def test_a_post_from_another_origin_is_refused(ui_client):
    client = ui_client("admin")
    resp = client.post(
        "/ui/onboarding/claim",
        {"serial": "sn-x"},
        headers={"Referer": "https://evil.example/form"},
    )
    assert resp.status_code == 400


def _ui_post_rules(app):  # type: ignore[no-untyped-def]
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("ui.") and "POST" in (rule.methods or ()):
            if rule.endpoint in ("ui.login", "ui.logout"):
                continue
            values = {arg: "x" for arg in rule.arguments}
            for number in ("user_id", "rid"):
                if number in values:
                    values[number] = 1
            yield rule, rule.build(values)[1]


def test_a_viewer_cannot_change_anything(ui_client, ui_app):
    client = ui_client("viewer")
    with _db(ui_app).transaction() as s:
        before = s.scalar(select(func.count()).select_from(AuditEvent))
    rules = list(_ui_post_rules(ui_app))
    assert len(rules) >= 14
    for rule, path in rules:
        resp = client.post(path, {"serial": "sn-v", "name": "x", "confirmed": "yes"})
        assert resp.status_code == 403, (rule.endpoint, resp.status_code)
    with _db(ui_app).transaction() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == before
    # and the pages offer no forms that change things
    html = client.get("/ui/onboarding").get_data(as_text=True)
    assert "Claim a serial" not in html and "Download bundle" not in html
    assert client.get("/ui/apps/new").status_code == 403
    assert client.get("/ui/users").status_code == 403


def test_operators_cannot_manage_users_or_issue_bundles(ui_client):
    client = ui_client("operator")
    assert client.get("/ui/users").status_code == 403
    assert client.post("/ui/onboarding/bundle", {"batch": "b1"}).status_code == 403
    assert client.post("/ui/users", {"username": "eve", "role": "admin"}).status_code == 403


def test_an_admin_adds_a_user_whose_password_is_shown_once(ui_client, ui_app):
    client = ui_client("admin")
    resp = client.post("/ui/users", {"username": "carol", "role": "viewer"})
    html = resp.get_data(as_text=True)
    password = re.search(r'<code class="secret">([^<]+)</code>', html).group(1)
    assert UiClient(ui_app).login("carol", password).status_code == 302
    assert "secret" not in client.get("/ui/users").get_data(as_text=True)
    dup = client.post("/ui/users", {"username": "carol", "role": "viewer"})
    assert "exists" in dup.get_data(as_text=True)
    with _db(ui_app).transaction() as s:
        ids = {u.username: u.id for u in s.scalars(select(User))}
    client.post(f"/ui/users/{ids['admin1']}/delete")
    assert "You cannot delete yourself." in client.get("/ui/users").get_data(as_text=True)
    client.post(f"/ui/users/{ids['carol']}/delete")
    with _db(ui_app).transaction() as s:
        assert set(s.scalars(select(User.username))) == {"admin", "admin1", "operator1", "viewer1"}
        assert (
            s.scalar(
                select(func.count()).select_from(UiSession).where(UiSession.user_id == ids["carol"])
            )
            == 0
        )  # her sessions went with her


def test_pages_carry_security_headers(ui_client):
    resp = ui_client("viewer").get("/ui/")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_passwords_are_argon2id_hashes_and_never_logged(ui_app, caplog):
    caplog.set_level(logging.DEBUG)
    with _db(ui_app).transaction() as s:
        user = s.scalar(select(User).where(User.username == "admin1"))
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORDS["admin"] not in user.password_hash
    client = UiClient(ui_app)
    client.login("admin1", PASSWORDS["admin"])
    client.login("admin1", "a-wrong-password")
    assert PASSWORDS["admin"] not in caplog.text and "a-wrong-password" not in caplog.text


def test_users_need_sane_names_roles_and_passwords(ui_app):
    from controller.domain.users import UserError

    with _db(ui_app).transaction() as s:
        for name, role, pw in (
            ("Bad Name", "viewer", None),
            ("ok", "root", None),
            ("ok", "viewer", "short"),
        ):
            with pytest.raises(UserError):
                create_user(s, name, role, pw)


def test_init_creates_the_first_admin_and_a_private_session_key(tmp_path, capsys, make_app):
    data = tmp_path / "ctl"
    pw_file = tmp_path / "admin-password"
    args = ["--data-dir", str(data), "init", "--token-file", str(tmp_path / "tok")]
    assert controller_main([*args, "--admin-password-file", str(pw_file)]) == 0
    assert stat.S_IMODE((data / KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    password = pw_file.read_text().strip()
    assert password not in capsys.readouterr().out

    app = make_app(_settings(data))
    assert UiClient(app).login("admin", password).status_code == 302
    assert controller_main(["--data-dir", str(data), "adduser", "--username", "dave"]) == 0
    out = capsys.readouterr().out
    printed = re.search(r"password \(shown once\): (\S+)", out).group(1)
    with app.extensions["outpost"].db.transaction() as s:
        dave = s.scalar(select(User).where(User.username == "dave"))
        assert dave.role == "operator"
        assert authenticate(s, "dave", printed).user is not None
    assert controller_main(["--data-dir", str(data), "adduser", "--username", "dave"]) == 1


def test_init_without_a_file_prints_the_admin_password_once(tmp_path, capsys):
    assert controller_main(["--data-dir", str(tmp_path / "c"), "init"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"web UI login 'admin', password \(shown once\): \S{20,}", out)
