"""Web UI list pages: sorting by a column and direction, pagination with counts, search on
each list, bad query values give a normal page; bulk label/assign/reboot on the Nodes
list ask first, then act on exactly the selected nodes as the user, node by node."""

from __future__ import annotations

import datetime as dt
import re
import uuid as uuidlib
from typing import Any

import pytest
from sqlalchemy import select

from controller.store.models import (
    App,
    Assignment,
    AuditEvent,
    Image,
    Network,
    Node,
    NodeTrust,
    utcnow,
)


def _db(app: Any) -> Any:
    return app.extensions["outpost"].db


def _nodes(app: Any, count: int) -> None:
    with _db(app).transaction() as s:
        for i in range(count):
            s.add(
                Node(
                    serial=f"sn-{i:03d}",
                    uuid=str(uuidlib.uuid4()),
                    state="registered",
                    last_seen=utcnow() - dt.timedelta(minutes=i),  # sn-000 seen last
                    labels={"site": "lab" if i % 2 else "edge"},
                )
            )


def _catalog(app: Any) -> None:
    with _db(app).transaction() as s:
        big = Image(name="big", sha256="a" * 64, size=900, format="qcow2")
        small = Image(name="small", sha256="b" * 64, size=10, format="oci-archive")
        s.add_all([big, small])
        s.flush()
        for name, image in (("web", small), ("db", big), ("cache", small)):
            s.add(App(uuid=str(uuidlib.uuid4()), name=name, kind="container", image_id=image.id))
        s.add(Network(name="lan", subnet="10.1.0.0/24", nat=True))
        s.add(Network(name="dmz", subnet="10.9.0.0/24"))


def _serials(html: str) -> list[str]:
    return re.findall(r'<th scope="row"><a href="/ui/nodes/([^"]+)"', html)


def _first_cells(html: str) -> list[str]:
    return re.findall(r'<tr><th scope="row">(?:<a [^>]*>)?([^<]+)<', html)


# --- sorting, paging, search ---------------------------------------------------------


def test_sorting_the_node_list_by_a_column_and_direction_orders_its_rows(ui_client, ui_app):
    _nodes(ui_app, 5)
    ui = ui_client("viewer")
    assert _serials(ui.get("/ui/nodes").get_data(as_text=True)) == [f"sn-00{i}" for i in range(5)]
    down = ui.get("/ui/nodes?sort=serial&dir=desc").get_data(as_text=True)
    assert _serials(down) == [f"sn-00{i}" for i in (4, 3, 2, 1, 0)]
    assert 'aria-sort="descending"' in down
    assert 'href="/ui/nodes?sort=serial&amp;dir=asc"' in down  # the header turns it round
    recent = ui.get("/ui/nodes?sort=last_seen&dir=desc").get_data(as_text=True)
    assert _serials(recent)[0] == "sn-000" and _serials(recent)[-1] == "sn-004"


def test_the_node_list_pages_show_the_right_slice_and_counts(ui_client, ui_app):
    _nodes(ui_app, 60)
    ui = ui_client("viewer")
    second = ui.get("/ui/nodes?per=25&page=2&sort=serial&dir=desc").get_data(as_text=True)
    assert _serials(second) == [f"sn-{i:03d}" for i in range(34, 9, -1)]
    assert "26\u201350 of 60" in second and "Page 2 of 3" in second
    # links keep the sort and the page size; a new page size starts at page 1
    assert 'href="/ui/nodes?per=25&amp;page=3&amp;sort=serial&amp;dir=desc"' in second
    assert 'href="/ui/nodes?per=100&amp;sort=serial&amp;dir=desc"' in second
    labelled = ui.get("/ui/nodes?q=site%3Dlab&sort=serial&dir=desc&per=25").get_data(as_text=True)
    assert "1\u201325 of 30" in labelled and _serials(labelled)[0] == "sn-059"


@pytest.mark.parametrize(
    "query",
    [
        "sort=nope&dir=sideways&page=abc&per=7",
        "page=-3&per=-1",
        "page=99999999999999999999999&per=100000000",
        "page=%EF%BC%91&per=%C2%B2",
        "sort=serial%00&q=%00%01%02",
        "q=" + "x" * 5000,
        "q=%25_%5C&_scheme=javascript&_external=1",
        "sort=__class__&dir=desc",
    ],
)
def test_bad_or_huge_query_values_give_a_normal_page(ui_client, ui_app, query):
    _nodes(ui_app, 3)
    _catalog(ui_app)
    ui = ui_client("viewer")
    for path in ("/ui/nodes", "/ui/apps", "/ui/images", "/ui/networks", "/ui/audit"):
        resp = ui.get(f"{path}?{query}")
        assert resp.status_code == 200, (path, query)


def test_a_page_past_the_end_is_the_last_page(ui_client, ui_app):
    _nodes(ui_app, 30)
    html = ui_client("viewer").get("/ui/nodes?per=25&page=999").get_data(as_text=True)
    assert "26\u201330 of 30" in html and _serials(html)[-1] == "sn-029"


def test_search_filters_the_apps_images_and_networks_lists(ui_client, ui_app):
    _catalog(ui_app)
    ui = ui_client("viewer")
    apps = ui.get("/ui/apps?q=we").get_data(as_text=True)
    assert _first_cells(apps) == ["web"] and "1\u20131 of 1" in apps
    by_image = ui.get("/ui/apps?q=small").get_data(as_text=True)  # by the image's name
    assert _first_cells(by_image) == ["cache", "web"]
    assert "No app matches" in ui.get("/ui/apps?q=zzz").get_data(as_text=True)
    images = ui.get("/ui/images?q=qcow").get_data(as_text=True)  # by format
    assert _first_cells(images) == ["big"]
    nets = ui.get("/ui/networks?q=10.9.").get_data(as_text=True)  # by subnet
    assert _first_cells(nets) == ["dmz"]
    assert _first_cells(ui.get("/ui/networks?q=la").get_data(as_text=True)) == ["lan"]
    assert "No network matches" in ui.get("/ui/networks?q=%25").get_data(as_text=True)


def test_sorting_the_apps_images_networks_and_audit_lists(ui_client, ui_app):
    _catalog(ui_app)
    with _db(ui_app).transaction() as s:
        node = Node(serial="sn-x", state="registered")
        s.add(node)
        s.flush()
        web = s.scalar(select(App).where(App.name == "web"))
        s.add(Assignment(node_id=node.id, app_id=web.id))
        for who in ("user:bob", "user:alice", "user:carol"):
            s.add(AuditEvent(actor=who, action="node.claim", target=who[5:]))
    ui = ui_client("viewer")
    assert _first_cells(ui.get("/ui/apps").get_data(as_text=True)) == ["cache", "db", "web"]
    by_count = ui.get("/ui/apps?sort=instances&dir=desc").get_data(as_text=True)
    assert _first_cells(by_count)[0] == "web"
    by_image = ui.get("/ui/apps?sort=image&dir=asc").get_data(as_text=True)
    assert _first_cells(by_image) == ["db", "web", "cache"]  # big, then small (by id)
    sizes = ui.get("/ui/images?sort=size&dir=desc").get_data(as_text=True)
    assert _first_cells(sizes) == ["big", "small"]
    nets = ui.get("/ui/networks?sort=subnet&dir=desc").get_data(as_text=True)
    assert _first_cells(nets) == ["dmz", "lan"]
    audit = ui.get("/ui/audit?sort=actor&dir=asc&action=node.claim").get_data(as_text=True)
    actors = re.findall(r"<td>(user:\w+)</td>", audit)
    assert actors == ["user:alice", "user:bob", "user:carol"]
    newest = ui.get("/ui/audit?action=node.claim").get_data(as_text=True)  # newest first
    assert re.findall(r"<td>(user:\w+)</td>", newest) == ["user:carol", "user:alice", "user:bob"]


# --- bulk actions on the Nodes list --------------------------------------------------


def _bulk(ui: Any, action: str, serials: list[str], **extra: str) -> Any:
    return ui.post("/ui/nodes/bulk", {"action": action, "serial": serials, **extra})


def _audits(app: Any, action: str) -> list[tuple[str, str]]:
    with _db(app).transaction() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == action))
        return sorted((r.actor, r.target) for r in rows)


def test_the_node_list_offers_operators_checkboxes_and_bulk_actions(ui_client, ui_app):
    _nodes(ui_app, 3)
    page = ui_client("operator").get("/ui/nodes").get_data(as_text=True)
    assert page.count('name="serial"') == 3 and "data-select-all" in page
    assert 'action="/ui/nodes/bulk"' in page and 'id="live" data-refresh' in page
    viewer = ui_client("viewer").get("/ui/nodes").get_data(as_text=True)
    assert 'name="serial"' not in viewer and "/ui/nodes/bulk" not in viewer


def test_a_bulk_label_asks_first_then_labels_exactly_the_selected_nodes(ui_client, ui_app):
    _nodes(ui_app, 4)
    ui = ui_client("operator")
    ask = _bulk(ui, "label", ["sn-001", "sn-002"], label="ring=1")
    html = ask.get_data(as_text=True)
    assert ask.status_code == 200 and "Set label ring=1 on 2 nodes?" in html
    assert "<code>sn-001</code>" in html and "<code>sn-003</code>" not in html
    assert _audits(ui_app, "node.update") == []  # nothing yet
    done = _bulk(ui, "label", ["sn-001", "sn-002"], label="ring=1", confirmed="yes")
    assert done.status_code == 200 and "Done on 2; unchanged on 0; refused on 0." in done.get_data(
        as_text=True
    )
    with _db(ui_app).transaction() as s:
        labels = dict(s.execute(select(Node.serial, Node.labels)).all())
    assert labels["sn-001"] == {"site": "lab", "ring": "1"}  # the other label stays
    assert labels["sn-002"] == {"site": "edge", "ring": "1"}
    assert "ring" not in labels["sn-000"] and "ring" not in labels["sn-003"]
    assert _audits(ui_app, "node.update") == [
        ("user:operator1", "sn-001"),
        ("user:operator1", "sn-002"),
    ]
    again = _bulk(ui, "label", ["sn-001"], label="ring=1", confirmed="yes")
    assert "already labelled ring=1" in again.get_data(as_text=True)


def test_a_bulk_assign_reports_refusals_per_node_and_applies_the_rest(ui_client, ui_app):
    _nodes(ui_app, 3)
    _catalog(ui_app)
    with _db(ui_app).transaction() as s:
        revoked = s.scalar(select(Node).where(Node.serial == "sn-002"))
        s.add(
            NodeTrust(
                node_id=revoked.id, state="attested", result="", tpm="swtpm", revoked_at=utcnow()
            )
        )
    ui = ui_client("operator")
    _bulk(ui, "assign", ["sn-000"], app="web", confirmed="yes")
    ask = _bulk(ui, "assign", ["sn-000", "sn-001", "sn-002", "sn-gone"], app="web")
    assert "Assign app web on 4 nodes?" in ask.get_data(as_text=True)
    assert "No node has the serial sn-gone" in ask.get_data(as_text=True)
    done = _bulk(
        ui, "assign", ["sn-000", "sn-001", "sn-002", "sn-gone"], app="web", confirmed="yes"
    ).get_data(as_text=True)
    assert "Done on 1; unchanged on 1; refused on 2." in done
    rows = re.findall(r'<tr data-outcome="(\w+)"><th scope="row"><a [^>]*>([^<]+)<', done)
    assert {serial: status for status, serial in rows} == {
        "sn-000": "unchanged",
        "sn-001": "done",
        "sn-002": "refused",
        "sn-gone": "refused",
    }
    assert "is revoked" in done and "web already runs here" in done
    with _db(ui_app).transaction() as s:
        assigned = s.scalars(
            select(Node.serial).join(Assignment, Assignment.node_id == Node.id)
        ).all()
    assert sorted(assigned) == ["sn-000", "sn-001"]
    assert _audits(ui_app, "app.assign") == [
        ("user:operator1", "sn-000"),
        ("user:operator1", "sn-001"),
    ]


def test_a_bulk_reboot_asks_first_then_reboots_only_the_selected_nodes(ui_client, ui_app):
    _nodes(ui_app, 3)
    ui = ui_client("operator")
    ask = _bulk(ui, "reboot", ["sn-000", "sn-002", "sn-000"]).get_data(as_text=True)
    assert "Reboot on 2 nodes?" in ask and ask.count('name="serial"') == 2  # once each
    _bulk(ui, "reboot", ["sn-000", "sn-002"], confirmed="yes")
    with _db(ui_app).transaction() as s:
        counters = dict(s.execute(select(Node.serial, Node.reboot_counter)).all())
    assert counters == {"sn-000": 1, "sn-001": 0, "sn-002": 1}
    assert _audits(ui_app, "node.reboot") == [
        ("user:operator1", "sn-000"),
        ("user:operator1", "sn-002"),
    ]


def test_a_viewer_cannot_run_a_bulk_action(ui_client, ui_app):
    _nodes(ui_app, 2)
    viewer = ui_client("viewer")
    resp = _bulk(viewer, "reboot", ["sn-000"], confirmed="yes")
    assert resp.status_code == 403
    with _db(ui_app).transaction() as s:
        assert s.scalar(select(Node.reboot_counter).where(Node.serial == "sn-000")) == 0


def test_a_bulk_action_needs_the_csrf_token(ui_client, ui_app):
    _nodes(ui_app, 1)
    ui = ui_client("operator")
    resp = ui.post(
        "/ui/nodes/bulk", {"action": "reboot", "serial": "sn-000", "confirmed": "yes"}, csrf=False
    )
    assert resp.status_code == 400
    with _db(ui_app).transaction() as s:
        assert s.scalar(select(Node.reboot_counter).where(Node.serial == "sn-000")) == 0


def test_a_bulk_action_is_capped_and_needs_a_choice(ui_client, ui_app):
    ui = ui_client("operator")
    too_many = _bulk(ui, "reboot", [f"sn-{i}" for i in range(501)], confirmed="yes")
    assert too_many.status_code == 302
    page = ui.get(too_many.headers["Location"]).get_data(as_text=True)
    assert "501 nodes are selected; one bulk action takes at most 500." in page
    for action, extra, message in (
        ("reboot", {}, "Select at least one node first."),
        ("format", {"serial": ["sn-1"]}, "Choose what to do with the selected nodes."),
        ("label", {"serial": ["sn-1"], "label": "ring"}, "Write the label as key=value."),
        ("assign", {"serial": ["sn-1"]}, "Choose the app to assign."),
    ):
        resp = ui.post("/ui/nodes/bulk", {"action": action, **extra})
        assert resp.status_code == 302
        assert message in ui.get(resp.headers["Location"]).get_data(as_text=True)


def test_a_bad_label_is_refused_on_each_node_in_plain_words(ui_client, ui_app):
    _nodes(ui_app, 1)
    done = _bulk(ui_client("operator"), "label", ["sn-000"], label="Bad Key=x", confirmed="yes")
    html = done.get_data(as_text=True)
    assert "refused on 1" in html and 'data-outcome="refused"' in html
    with _db(ui_app).transaction() as s:
        assert s.scalar(select(Node.labels).where(Node.serial == "sn-000")) == {"site": "edge"}
