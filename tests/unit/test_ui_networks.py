"""Web UI networks page: the list (subnet, NAT, apps attached), create with the API's rules
(limits beside the fields, errors next to them), delete after a confirmation — refused in
plain words while an app uses the network; a viewer only reads."""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

import pytest
from sqlalchemy import select

from controller.store.models import AuditEvent, Network


def _db(app):  # type: ignore[no-untyped-def]
    return app.extensions["outpost"].db


@pytest.fixture
def nets(api) -> None:  # type: ignore[no-untyped-def]
    """Network lan (NAT) used by app web, network spare unused."""
    lan = {"name": "lan", "subnet": "10.3.0.0/24", "nat": True}
    assert api("POST", "/networks", json=lan).status_code == 201
    assert (
        api("POST", "/networks", json={"name": "spare", "subnet": "10.4.0.0/24"}).status_code == 201
    )
    image = {"name": "img", "format": "oci-archive", "sha256": "a" * 64, "size": 1}
    assert api("POST", "/images/register", json=image | {"url": "https://x/i"}).status_code == 201
    web = {"name": "web", "kind": "container", "image": "img", "networks": [{"name": "lan"}]}
    assert api("POST", "/apps", json=web).status_code == 201


def _text(resp: Any) -> str:
    return html_lib.unescape(resp.get_data(as_text=True))


def _error(page: str, field: str) -> str:
    found = re.search(rf'<div class="error" id="{field}-error">(.*?)</div>', page, re.S)
    assert found, f"no error next to {field}"
    return re.sub(r"<[^>]+>", " ", found.group(1))


def _networks(ui_app: Any) -> dict[str, tuple[str, bool]]:
    with _db(ui_app).transaction() as s:
        return {n.name: (n.subnet, n.nat) for n in s.scalars(select(Network))}


def _audited(ui_app: Any, action: str) -> list[tuple[str, str]]:
    with _db(ui_app).transaction() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == action))
        return [(r.actor, r.target) for r in rows]


def test_the_networks_page_lists_subnet_nat_and_the_apps_using_each(ui_client, nets):
    page = _text(ui_client("viewer").get("/ui/networks"))
    assert 'href="/ui/networks"' in page  # in the main navigation
    lan = page[page.index(">lan</th>") :].split("</tr>")[0]
    assert "10.3.0.0/24" in lan and "<td>yes</td>" in lan and 'href="/ui/apps/web"' in lan
    spare = page[page.index(">spare</th>") :].split("</tr>")[0]
    assert "<td>no</td>" in spare and "—" in spare


def test_the_create_form_shows_each_fields_limits(ui_client):
    page = _text(ui_client("operator").get("/ui/networks"))
    assert "lower-case letters, digits and dashes, 1 to 63 characters" in page
    assert "an IPv4 network written a.b.c.d/len, len from 16 to 29" in page


def test_a_network_created_in_the_ui_is_the_apis_network_and_is_audited(ui_client, ui_app, api):
    ui = ui_client("operator")
    resp = ui.post("/ui/networks/new", {"name": "cams", "subnet": "10.7.0.9/24", "nat": "y"})
    assert resp.status_code == 302
    assert "Network cams created (10.7.0.0/24, NAT to the uplink)." in _text(ui.get("/ui/networks"))
    shown = api("GET", "/networks").get_json()["networks"]
    assert {"name": "cams", "subnet": "10.7.0.0/24", "nat": True} in shown
    assert _audited(ui_app, "network.create") == [("user:operator1", "cams")]


def test_a_bad_subnet_is_shown_next_to_the_field_in_plain_words(ui_client, ui_app):
    resp = ui_client("operator").post("/ui/networks/new", {"name": "cams", "subnet": "10.7.0.0/8"})
    assert resp.status_code == 422
    assert "Subnet: an IPv4 network written a.b.c.d/len" in _error(_text(resp), "subnet")
    assert _networks(ui_app) == {}


def test_an_overlapping_subnet_is_refused_naming_the_other_network(ui_client, ui_app, nets):
    resp = ui_client("operator").post("/ui/networks/new", {"name": "cams", "subnet": "10.3.0.0/16"})
    assert resp.status_code == 422
    assert "10.3.0.0/16 overlaps lan (10.3.0.0/24)" in _error(_text(resp), "subnet")
    assert "cams" not in _networks(ui_app)


def test_deleting_a_network_asks_first(ui_client, ui_app, nets):
    ui = ui_client("operator")
    for resp in (ui.get("/ui/networks/spare/delete"), ui.post("/ui/networks/spare/delete")):
        page = _text(resp)
        assert resp.status_code == 200 and "Delete network spare?" in page
        assert "Network spare (10.4.0.0/24) is deleted." in page and "refused" not in page
    assert "spare" in _networks(ui_app)


def test_a_confirmed_delete_of_an_unused_network_removes_it_and_is_audited(ui_client, ui_app, nets):
    ui = ui_client("operator")
    resp = ui.post("/ui/networks/spare/delete", {"confirmed": "yes"})
    assert resp.headers["Location"] == "/ui/networks"
    assert "Network spare deleted." in _text(ui.get("/ui/networks"))
    assert set(_networks(ui_app)) == {"lan"}
    assert _audited(ui_app, "network.delete") == [("user:operator1", "spare")]


def test_deleting_a_network_in_use_is_refused_in_plain_words_and_changes_nothing(
    ui_client, ui_app, nets
):
    ui = ui_client("operator")
    ask = _text(ui.get("/ui/networks/lan/delete"))
    assert "Network lan: refused while an app uses it, and web uses it now." in ask
    resp = ui.post("/ui/networks/lan/delete", {"confirmed": "yes"})
    page = _text(ui.get(resp.headers["Location"]))
    assert "Network lan was not deleted: network 'lan' is used by web." in page
    assert set(_networks(ui_app)) == {"lan", "spare"} and not _audited(ui_app, "network.delete")


def test_a_viewer_can_neither_create_nor_delete_networks(ui_client, ui_app, nets):
    viewer = ui_client("viewer")
    page = _text(viewer.get("/ui/networks"))
    assert "Create a network" not in page and "Delete network" not in page
    assert (
        viewer.post("/ui/networks/new", {"name": "x", "subnet": "10.9.0.0/24"}).status_code == 403
    )
    assert viewer.get("/ui/networks/spare/delete").status_code == 403
    assert viewer.post("/ui/networks/spare/delete", {"confirmed": "yes"}).status_code == 403
    assert set(_networks(ui_app)) == {"lan", "spare"}
