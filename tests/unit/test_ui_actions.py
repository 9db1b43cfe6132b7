"""Web UI deletes with the operator API's rules: an app, an image, a claimed node that never
registered — each asks first, then calls the API's domain action (audited as the user);
refusals are flashed in plain words and change nothing; roles as the API's."""

from __future__ import annotations

import html as html_lib
from typing import Any

import pytest
from sqlalchemy import select

from controller.store.models import App, AuditEvent, Image, Node

IMAGE = {"format": "oci-archive", "sha256": "a" * 64, "size": 1, "url": "https://x/i"}


def _db(app):  # type: ignore[no-untyped-def]
    return app.extensions["outpost"].db


@pytest.fixture
def fleet(api, ui_app) -> None:  # type: ignore[no-untyped-def]
    """Image img used by app web (on sn-1 and sn-2), image spare unused, claim sn-new."""
    for name in ("img", "spare"):
        assert api("POST", "/images/register", json=IMAGE | {"name": name}).status_code == 201
    web = {"name": "web", "kind": "container", "image": "img"}
    assert api("POST", "/apps", json=web).status_code == 201
    for serial in ("sn-1", "sn-2", "sn-new"):
        assert api("POST", "/nodes/claim", json={"serial": serial}).status_code == 201
    for serial in ("sn-1", "sn-2"):
        assert api("POST", f"/nodes/{serial}/apps", json={"app": "web"}).status_code == 201


def _text(resp: Any) -> str:
    return html_lib.unescape(resp.get_data(as_text=True))


def _followed(ui: Any, resp: Any) -> str:
    assert resp.status_code == 302, resp.status_code
    return _text(ui.get(resp.headers["Location"]))


def _audited(ui_app: Any, action: str) -> list[AuditEvent]:
    with _db(ui_app).transaction() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))
        s.expunge_all()
    return rows


def _names(ui_app: Any, column: Any) -> set[str]:
    with _db(ui_app).transaction() as s:
        return set(s.scalars(select(column)))


# --- apps -----------------------------------------------------------------------------


def test_deleting_an_app_asks_first_saying_which_nodes_lose_it(ui_client, ui_app, fleet):
    ui = ui_client("operator")
    for resp in (ui.get("/ui/apps/web/delete"), ui.post("/ui/apps/web/delete")):
        page = _text(resp)
        assert resp.status_code == 200 and "Delete app web?" in page
        assert "App web is removed from its 2 nodes; their running instances are stopped" in page
    assert "web" in _names(ui_app, App.name)


def test_a_confirmed_app_delete_removes_it_everywhere_and_is_audited(ui_client, ui_app, fleet, api):
    ui = ui_client("operator")
    resp = ui.post("/ui/apps/web/delete", {"confirmed": "yes"})
    assert resp.headers["Location"] == "/ui/apps"
    assert "App web deleted; its nodes stop and remove it." in _followed(ui, resp)
    assert api("GET", "/apps/web").status_code == 404
    assert api("GET", "/nodes/sn-1").get_json()["assigned_apps"] == []
    (row,) = _audited(ui_app, "app.delete")
    assert row.actor == "user:operator1" and row.target == "web"


def test_the_app_page_offers_delete_to_operators_only(ui_client, fleet):
    assert "Delete app…" in _text(ui_client("operator").get("/ui/apps/web"))
    assert "Delete app…" not in _text(ui_client("viewer").get("/ui/apps/web"))


def test_a_viewer_cannot_delete_an_app(ui_client, ui_app, fleet):
    viewer = ui_client("viewer")
    assert viewer.get("/ui/apps/web/delete").status_code == 403
    assert viewer.post("/ui/apps/web/delete", {"confirmed": "yes"}).status_code == 403
    assert "web" in _names(ui_app, App.name) and not _audited(ui_app, "app.delete")


def test_deleting_an_app_that_is_gone_says_so(ui_client, fleet):
    ui = ui_client("operator")
    resp = ui.post("/ui/apps/nope/delete", {"confirmed": "yes"})
    assert resp.headers["Location"] == "/ui/apps"
    assert "App nope was not deleted: no app named 'nope'." in _followed(ui, resp)


# --- images ---------------------------------------------------------------------------


def test_deleting_an_image_in_use_warns_on_the_confirmation(ui_client, fleet):
    page = _text(ui_client("operator").get("/ui/images/img/delete"))
    assert "Delete image img?" in page and "Image img (oci-archive) is removed" in page
    assert "Image img: refused while an app uses it, and web uses it now." in page


def test_deleting_an_image_in_use_is_refused_in_plain_words(ui_client, ui_app, fleet):
    ui = ui_client("operator")
    resp = ui.post("/ui/images/img/delete", {"confirmed": "yes"})
    assert "Image img was not deleted: image 'img' is used by apps." in _followed(ui, resp)
    assert "img" in _names(ui_app, Image.name) and not _audited(ui_app, "image.delete")


def test_a_confirmed_delete_of_an_unused_image_removes_it_and_is_audited(ui_client, ui_app, fleet):
    ui = ui_client("operator")
    assert "No app uses" not in _text(ui.get("/ui/images/spare/delete"))  # no warning
    resp = ui.post("/ui/images/spare/delete", {"confirmed": "yes"})
    assert "Image spare deleted." in _followed(ui, resp)
    assert _names(ui_app, Image.name) == {"img"}
    (row,) = _audited(ui_app, "image.delete")
    assert row.actor == "user:operator1" and row.target == "spare"


def test_the_images_page_offers_delete_to_operators_only(ui_client, fleet):
    assert 'aria-label="Delete image spare"' in _text(ui_client("operator").get("/ui/images"))
    assert "Delete image" not in _text(ui_client("viewer").get("/ui/images"))


def test_a_viewer_cannot_delete_an_image(ui_client, ui_app, fleet):
    viewer = ui_client("viewer")
    assert viewer.get("/ui/images/spare/delete").status_code == 403
    assert viewer.post("/ui/images/spare/delete", {"confirmed": "yes"}).status_code == 403
    assert _names(ui_app, Image.name) == {"img", "spare"}


# --- nodes ----------------------------------------------------------------------------


def test_forgetting_a_claim_asks_first(ui_client, ui_app, fleet):
    page = _text(ui_client("admin").get("/ui/nodes/sn-new/delete"))
    assert "Forget node sn-new?" in page and "which never registered, is deleted" in page
    assert "sn-new" in _names(ui_app, Node.serial)


def test_a_confirmed_forget_deletes_the_claim_and_is_audited(ui_client, ui_app, fleet):
    admin = ui_client("admin")
    resp = admin.post("/ui/nodes/sn-new/delete", {"confirmed": "yes"})
    assert resp.headers["Location"] == "/ui/nodes"
    assert "Node sn-new forgotten: its claim is deleted." in _followed(admin, resp)
    assert "sn-new" not in _names(ui_app, Node.serial)
    (row,) = _audited(ui_app, "node.delete")
    assert row.actor == "user:admin1" and row.target == "sn-new"


def test_forgetting_needs_an_admin_as_in_the_api(ui_client, ui_app, fleet):
    operator = ui_client("operator")
    assert "Forget this claim" not in _text(operator.get("/ui/nodes/sn-new"))
    assert operator.get("/ui/nodes/sn-new/delete").status_code == 403
    assert operator.post("/ui/nodes/sn-new/delete", {"confirmed": "yes"}).status_code == 403
    assert "sn-new" in _names(ui_app, Node.serial)
    assert "Forget this claim" in _text(ui_client("admin").get("/ui/nodes/sn-new"))


def test_forgetting_a_registered_node_is_refused_in_plain_words(ui_client, ui_app, fleet):
    with _db(ui_app).transaction() as s:
        s.add(
            Node(serial="sn-reg", uuid="0b5e4b3a-1d6c-4f7e-8a9b-0c1d2e3f4a5b", state="registered")
        )
    admin = ui_client("admin")
    assert "Forget this claim" not in _text(admin.get("/ui/nodes/sn-reg"))
    assert "the controller will refuse. Revoke" in _text(admin.get("/ui/nodes/sn-reg/delete"))
    resp = admin.post("/ui/nodes/sn-reg/delete", {"confirmed": "yes"})
    assert resp.headers["Location"] == "/ui/nodes/sn-reg"
    page = _followed(admin, resp)
    assert "Node sn-reg was not forgotten: node 'sn-reg' is registered; revoke it." in page
    assert "sn-reg" in _names(ui_app, Node.serial) and not _audited(ui_app, "node.delete")
