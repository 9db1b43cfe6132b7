"""Web UI apps and images: field errors from the API's rules, create/edit/assign, uploads."""

from __future__ import annotations

import hashlib
import html as html_lib
import io
import re

from sqlalchemy import select

from controller.domain.onboarding import claim_serial
from controller.store.models import AuditEvent, Image
from tests.fixtures.browser import app_form as _form

BLOB = b"an oci archive, as far as this test cares"
SHA = hashlib.sha256(BLOB).hexdigest()


def _db(app):  # type: ignore[no-untyped-def]
    return app.extensions["outpost"].db


def _images(app) -> None:  # type: ignore[no-untyped-def]
    with _db(app).transaction() as s:
        s.add(Image(name="busybox", sha256=SHA, size=len(BLOB), format="oci-archive"))
        s.add(Image(name="testvm", sha256="b" * 64, size=10, format="kernel-bundle"))


def _error(html: str, field: str) -> str:
    found = re.search(rf'<div class="error" id="{field}-error">(.*?)</div>', html, re.S)
    assert found, f"no error next to {field}"
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


def test_an_app_created_in_the_ui_is_the_apis_app(ui_client, ui_app, client, admin_headers):
    _images(ui_app)
    resp = ui_client("operator").post("/ui/apps/new", _form())
    assert resp.status_code == 302 and resp.headers["Location"] == "/ui/apps/web"
    shown = client.get("/api/v1/apps/web", headers=admin_headers).get_json()
    assert shown["command"] == ["sh", "-c", "echo hi; sleep 600"]
    assert shown["env"] == {"GREETING": "hello, world", "MODE": "test"}
    assert shown["resources"]["memory_mib"] == 64 and shown["selector"] is None
    with _db(ui_app).transaction() as s:
        audit = s.scalar(select(AuditEvent).where(AuditEvent.action == "app.create"))
        assert audit.actor == "user:operator1" and audit.after["name"] == "web"


def test_the_app_page_shows_the_command_as_typed_with_its_quoting(ui_client, ui_app):
    _images(ui_app)
    ui = ui_client("operator")
    assert ui.post("/ui/apps/new", _form()).status_code == 302
    html = ui.get("/ui/apps/web").get_data(as_text=True)
    assert "<code>sh -c &#39;echo hi; sleep 600&#39;</code>" in html


def test_errors_appear_next_to_their_fields(ui_client, ui_app):
    _images(ui_app)
    ui = ui_client("operator")
    cases = [
        ({"name": "Web App"}, "name", "Name: lower-case letters, digits and dashes"),
        ({"vcpus": "0"}, "vcpus", "vCPUs: a whole number from 1 to 64"),
        ({"memory_mib": "lots"}, "memory_mib", "Memory (MiB): a whole number of MiB"),
        ({"image": "testvm"}, "image", "needs image format oci-archive"),
        ({"image": "nope"}, "image", "no image named 'nope'"),
        ({"networks": "lan 80"}, "networks", "a port is host:guest"),
        ({"networks": "lan 8080:80/tcp"}, "networks", "unknown network 'lan'"),
        ({"env": "1BAD=x"}, "env", "a key is letters, digits and _"),
        ({"command": 'sh -c "unclosed'}, "command", "cannot split into words"),
        ({"selector": "site"}, "selector", "write key=value"),
        ({"adapters": "gpu 0000:01:00.0"}, "image", "adapters can only be passed through"),
    ]
    for change, field, message in cases:
        resp = ui.post("/ui/apps/new", _form(**change))
        assert resp.status_code == 422, change
        assert message in _error(resp.get_data(as_text=True), field), change
    ui.post("/ui/apps/new", _form())
    dup = ui.post("/ui/apps/new", _form())
    assert "an app named 'web' exists" in _error(dup.get_data(as_text=True), "name")


def test_editing_an_app_changes_it_and_is_audited(ui_client, ui_app, client, admin_headers):
    _images(ui_app)
    ui = ui_client("operator")
    ui.post("/ui/apps/new", _form())
    page = ui.get("/ui/apps/web/edit").get_data(as_text=True)
    assert "sh -c &#39;echo hi; sleep 600&#39;" in page  # shlex.join of the stored command
    resp = ui.post("/ui/apps/web/edit", _form(command="sleep 5", selector="site=lab"))
    assert resp.status_code == 302
    shown = client.get("/api/v1/apps/web", headers=admin_headers).get_json()
    assert shown["command"] == ["sleep", "5"] and shown["selector"] == {"site": "lab"}
    with _db(ui_app).transaction() as s:
        audit = s.scalar(select(AuditEvent).where(AuditEvent.action == "app.update"))
        assert audit.before["command"] == ["sh", "-c", "echo hi; sleep 600"]
    # name and kind come from the stored app, whatever is posted
    assert ui.post("/ui/apps/web/edit", _form(name="other", kind="vm")).status_code == 302
    assert client.get("/api/v1/apps/other", headers=admin_headers).status_code == 404
    assert client.get("/api/v1/apps/web", headers=admin_headers).get_json()["kind"] == "container"


def test_assigning_an_app_to_a_node_from_the_app_page(ui_client, ui_app):
    _images(ui_app)
    with _db(ui_app).transaction() as s:
        claim_serial(s, "sn-1")
    ui = ui_client("operator")
    ui.post("/ui/apps/new", _form())
    assert ui.post("/ui/apps/web/assign", {"node": "sn-1"}).status_code == 302
    page = ui.get("/ui/apps/web").get_data(as_text=True)
    assert 'href="/ui/nodes/sn-1"' in page and "not reported" in page
    missing = ui.post("/ui/apps/web/assign", {"node": "sn-404"})
    assert "no node with serial or uuid" in _error(missing.get_data(as_text=True), "node")
    catalog = ui.get("/ui/apps").get_data(as_text=True)
    assert "1 node" in catalog
    assert ui.post("/ui/apps/web/unassign/sn-1").status_code == 302
    assert "Not assigned to any node" in ui.get("/ui/apps/web").get_data(as_text=True)


def _upload(ui, name: str, data: bytes, sha: str = ""):  # type: ignore[no-untyped-def]
    """As the page's form posts it: the CSRF token also in the action's query string (a
    large upload is admitted before its body is read)."""
    return ui.post(
        f"/ui/images/upload?csrf_token={ui.token}",
        {
            "up-name": name,
            "up-format": "oci-archive",
            "up-sha256": sha,
            "up-file": (io.BytesIO(data), "image.tar"),
        },
        content_type="multipart/form-data",
    )


def test_uploading_an_image_stores_it_in_the_datastore(ui_client, ui_app):
    ui = ui_client("operator")
    assert _upload(ui, "busybox", BLOB).status_code == 302
    datastore = ui_app.extensions["outpost"].settings.datastore_dir
    assert (datastore / "sha256" / SHA).read_bytes() == BLOB
    page = ui.get("/ui/images").get_data(as_text=True)
    assert SHA in page and "controller datastore" in page
    wrong = _upload(ui, "other", BLOB, sha="c" * 64)
    assert wrong.status_code == 422
    assert "not the declared" in _error(wrong.get_data(as_text=True), "up-sha256")
    dup = _upload(ui, "busybox", BLOB)
    assert "exists" in _error(dup.get_data(as_text=True), "up-name")


def test_registering_an_external_image_uses_the_apis_rules(ui_client, ui_app):
    ui = ui_client("operator")
    form = {
        "reg-name": "ext",
        "reg-format": "qcow2",
        "reg-sha256": "d" * 64,
        "reg-size": "1024",
        "reg-url": "ftp://example/x",
    }
    bad = ui.post("/ui/images/register", form)
    assert bad.status_code == 422
    assert "URL: an http:// or https:// address" in _error(bad.get_data(as_text=True), "reg-url")
    ok = ui.post("/ui/images/register", form | {"reg-url": "https://images.example/x.qcow2"})
    assert ok.status_code == 302
    page = ui.get("/ui/images").get_data(as_text=True)
    assert "external URL" in page and "1.0 KiB" in page
