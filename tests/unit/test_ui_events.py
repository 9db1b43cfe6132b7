"""The events page: the fleet's event stream in the UI, filtered like the API's."""

from __future__ import annotations

import uuid as uuidlib

from controller.domain import apps, nodes
from controller.store.lookup import find_app
from controller.store.models import Event, Image, Node


def _fleet(ui_app) -> None:  # type: ignore[no-untyped-def]
    with ui_app.extensions["outpost"].db.transaction() as s:
        s.add(Image(name="img", sha256="a" * 64, size=1, format="oci-archive", url=None))
        for serial in ("ev-1", "ev-2"):
            s.add(Node(serial=serial, uuid=str(uuidlib.uuid4()), state="registered"))
        s.flush()
        apps.create_app(s, "test", {"name": "cam", "kind": "container", "image": "img"})
        nodes.assign(s, "test", "ev-1", "cam")
        one = s.query(Node).filter_by(serial="ev-1").one()
        two = s.query(Node).filter_by(serial="ev-2").one()
        cam = find_app(s, "cam").uuid
        s.add(Event(node_id=one.id, kind="app.running", message="cam runs", app_uuid=cam))
        s.add(Event(node_id=one.id, kind="config.applied", message="generation 7 on one"))
        s.add(Event(node_id=two.id, kind="node.offline", message="two went away"))


def _table(html: str) -> str:
    return html.split("<tbody>")[1].split("</tbody>")[0] if "<tbody>" in html else ""


def test_the_events_page_lists_every_event_newest_first(ui_client, ui_app):
    _fleet(ui_app)
    html = ui_client("viewer").get("/ui/events").get_data(as_text=True)
    rows = _table(html)
    assert rows.index("two went away") < rows.index("generation 7") < rows.index("cam runs")


def test_events_are_filtered_by_node_app_and_kind(ui_client, ui_app):
    _fleet(ui_app)
    ui = ui_client("viewer")
    by_node = _table(ui.get("/ui/events?node=ev-2").get_data(as_text=True))
    assert "two went away" in by_node and "cam runs" not in by_node
    by_app = _table(ui.get("/ui/events?app=cam").get_data(as_text=True))
    assert "cam runs" in by_app and "generation 7" not in by_app
    by_kind = _table(ui.get("/ui/events?kind=config.&since=24h").get_data(as_text=True))
    assert "generation 7" in by_kind and "cam runs" not in by_kind


def test_an_unknown_node_or_kind_is_said_plainly_with_422(ui_client, ui_app):
    _fleet(ui_app)
    ui = ui_client("viewer")
    resp = ui.get("/ui/events?node=nope")
    assert resp.status_code == 422 and "nope" in resp.get_data(as_text=True)
    resp = ui.get("/ui/events?kind=%3Cscript%3E")
    assert resp.status_code == 422 and "Kind: one of the listed kinds" in resp.get_data(
        as_text=True
    )
    assert "<script>" not in resp.get_data(as_text=True)
