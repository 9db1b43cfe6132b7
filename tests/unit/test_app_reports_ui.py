"""The app page: what an app reports (latest values and labels per node, a chart per value)
and its user-data, a secret one shown only as its digest (also in the edit form)."""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib

from controller.domain import apps, nodes
from controller.store.lookup import find_app
from controller.store.models import Event, Image, MetricSample, Node

SECRET = "token: never-on-a-page\n"


def _report(at: float, fps: float) -> dict:  # type: ignore[type-arg]
    return {"values": {"fps": fps, "latency_p99_ms": 140.0}, "labels": {"device": "CPU"}, "at": at}


def _setup(ui_app) -> None:  # type: ignore[no-untyped-def]
    with ui_app.extensions["outpost"].db.transaction() as s:
        s.add(Image(name="img", sha256="a" * 64, size=1, format="qcow2", url=None))
        s.add(Node(serial="cam-1", uuid=str(uuidlib.uuid4()), state="registered"))
        s.flush()
        body = {"name": "infer", "kind": "vm", "image": "img", "user_data": SECRET}
        app = apps.create_app(s, "test", {**body, "user_data_secret": True})
        nodes.assign(s, "test", "cam-1", "infer")
        node = s.query(Node).filter_by(serial="cam-1").one()
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for i, fps in enumerate((0.5, 0.75, 1.0)):
            entry = {"uuid": app["uuid"], "cpu_seconds_total": 1.0, "memory_used_bytes": 1}
            data = {"at": 100.0 + i, "apps": [{**entry, "reported": _report(100.0 + i, fps)}]}
            s.add(MetricSample(node_id=node.id, at=now, data=data))
            node.metrics, node.metrics_at = data, now


def test_the_app_page_shows_what_the_app_reports_with_a_chart(ui_client, ui_app):
    _setup(ui_app)
    html = ui_client("viewer").get("/ui/apps/infer").get_data(as_text=True)
    assert "What it reports" in html and "<code>device=CPU</code>" in html
    assert "<code>fps=1</code>" in html and "<svg" in html and "frames/s" in html


def test_a_secret_user_data_is_never_on_a_page(ui_client, ui_app):
    _setup(ui_app)
    client = ui_client("operator")
    for page in ("/ui/apps/infer", "/ui/apps/infer/edit"):
        html = client.get(page).get_data(as_text=True)
        assert "never-on-a-page" not in html and "&lt;secret: " in html, page


def test_the_app_page_lists_the_events_of_its_instances_and_no_others(ui_client, ui_app):
    _setup(ui_app)
    with ui_app.extensions["outpost"].db.transaction() as s:
        node = s.query(Node).filter_by(serial="cam-1").one()
        uuid = find_app(s, "infer").uuid
        s.add(Event(node_id=node.id, kind="app.state", message="infer RUNNING", app_uuid=uuid))
        s.add(Event(node_id=node.id, kind="node.online", message="the node came back"))
    html = ui_client("viewer").get("/ui/apps/infer").get_data(as_text=True)
    events = html.split('id="app-events"')[1].split("</section>")[0]
    assert "infer RUNNING" in events and "cam-1" in events
    assert "the node came back" not in events
