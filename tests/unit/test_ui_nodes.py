"""Web UI fleet pages: overview counts, the node list (search, filters, pages), a node's
page (inventory, trust, apps, metrics, logs) and commands with confirmation."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid as uuidlib

from sqlalchemy import select

from controller.store.models import (
    App,
    Assignment,
    AuditEvent,
    Event,
    Image,
    LogBatch,
    MetricSample,
    Node,
    NodeTrust,
    utcnow,
)

APP_UUID = "11111111-2222-4333-8444-555555555555"


def _db(app):  # type: ignore[no-untyped-def]
    return app.extensions["outpost"].db


def _node(s, serial: str, *, seen: float | None = 5, trust: str | None = None, apps=()) -> Node:  # type: ignore[no-untyped-def]
    node = Node(
        serial=serial,
        uuid=str(uuidlib.uuid4()),
        state="registered",
        last_seen=utcnow() - dt.timedelta(seconds=seen) if seen is not None else None,
        inventory={"cpus": 2, "memory_kib": 2048 * 1024, "hostname": serial},
        info={"agent_version": "0.1", "config_generation": 1, "apps": list(apps)},
        labels={"site": "lab" if serial.endswith(("0", "2", "4", "6", "8")) else "edge"},
    )
    s.add(node)
    s.flush()
    if trust:
        s.add(NodeTrust(node_id=node.id, state=trust, result="", reason="bad PCR 0", tpm="swtpm"))
    return node


def _fleet(app) -> None:  # type: ignore[no-untyped-def]
    with _db(app).transaction() as s:
        image = Image(name="busybox", sha256="a" * 64, size=4 * 1024**2, format="oci-archive")
        s.add(image)
        s.flush()
        web = App(uuid=APP_UUID, name="web", kind="container", image_id=image.id, spec={})
        s.add(web)
        s.flush()
        good = _node(
            s,
            "sn-good",
            trust="attested",
            apps=[
                {
                    "uuid": APP_UUID,
                    "name": "web",
                    "state": "DOWNLOADING",
                    "progress_pct": 25,
                }
            ],
        )
        s.add(Assignment(node_id=good.id, app_id=web.id))
        bad = _node(
            s,
            "sn-bad",
            trust="failed",
            apps=[{"uuid": APP_UUID, "name": "web", "state": "ERROR", "error": "boom"}],
        )
        s.add(Assignment(node_id=bad.id, app_id=web.id))
        _node(s, "sn-gone", seen=3600)
        s.add(Node(serial="sn-new", state="claimed"))
        s.add(Event(node_id=bad.id, kind="app.error", message="web failed"))
        t0 = 1_700_000_000.0
        for i in range(6):
            s.add(
                MetricSample(
                    node_id=good.id,
                    data={
                        "at": t0 + 60 * i,
                        "node": {
                            "cpu_seconds_total": 30.0 * i,
                            "memory_used_bytes": (100 + i) * 1024**2,
                            "memory_total_bytes": 2048 * 1024**2,
                            "disk_used_bytes": 0,
                            "disk_total_bytes": 0,
                            "net_rx_bytes_total": 61440 * i,
                            "net_tx_bytes_total": 0,
                            "uptime_s": 60.0 * i,
                        },
                        "apps": [],
                    },
                )
            )
        lines = [{"ts": t0, "level": "INFO", "msg": "hello <from> the agent"}]
        s.add(
            LogBatch(
                node_id=good.id,
                source="agent",
                lines=1,
                data_gz=gzip.compress("\n".join(json.dumps(x) for x in lines).encode()),
            )
        )
        good.log_seq = {"agent": 0}


def test_the_overview_counts_nodes_and_lists_those_needing_attention(ui_client, ui_app):
    _fleet(ui_app)
    html = ui_client("viewer").get("/ui/").get_data(as_text=True)

    def count(key: str) -> str:
        start = html.index(f'class="count c-{key}"')
        return html[start:].split('<span class="n">', 1)[1].split("<", 1)[0]

    assert [count(k) for k in ("total", "online", "offline", "claimed")] == ["4", "2", "1", "1"]
    assert [count(k) for k in ("attested", "failed", "unattested")] == ["1", "1", "1"]
    assert "Nodes needing attention (2)" in html
    assert "attestation failed; app web in ERROR" in html and "offline" in html
    assert "web failed" in html  # recent events
    assert "data-refresh" in html


def test_the_node_list_is_searchable_filterable_and_paginated(ui_client, ui_app):
    with _db(ui_app).transaction() as s:
        for i in range(120):
            _node(s, f"sn-{i:03d}")
    ui = ui_client("viewer")
    first = ui.get("/ui/nodes").get_data(as_text=True)
    assert "1\u201350 of 120" in first and "Page 1 of 3" in first
    assert "sn-049" in first and "sn-050" not in first
    third = ui.get("/ui/nodes?page=3").get_data(as_text=True)
    assert "sn-119" in third and 'rel="next"' not in third
    found = ui.get("/ui/nodes?q=sn-11").get_data(as_text=True)
    assert found.count('href="/ui/nodes/sn-11') == 10
    labelled = ui.get("/ui/nodes?q=site%3Dlab").get_data(as_text=True)
    assert "1\u201350 of 60" in labelled
    assert "No node matches" in ui.get("/ui/nodes?status=offline").get_data(as_text=True)
    last = ui.get("/ui/nodes?status=online&page=99").get_data(as_text=True)
    assert "101\u2013120 of 120" in last and "sn-119" in last


def test_the_node_page_shows_everything_the_node_reported(ui_client, ui_app):
    _fleet(ui_app)
    html = ui_client("viewer").get("/ui/nodes/sn-good").get_data(as_text=True)
    assert '<progress max="4194304" value="1048576">25%</progress>' in html
    assert "DOWNLOADING" in html
    assert "memory kib" in html and "2.0 GiB" in html  # inventory
    assert "hello &lt;from&gt; the agent" in html  # logs, escaped
    assert html.count("<polyline") == 5  # cpu; memory used, total; network received, sent
    assert "latest: CPU busy 25 %" in html  # 30 CPU-seconds a minute of 2 CPUs
    assert "latest: received 1 KiB/s; sent 0.0 KiB/s" in html  # 60 KiB a minute
    assert "<dt>USB</dt><dd>deny</dd>" in html and "has not reported its enforced ports" in html
    bad = ui_client("viewer").get("/ui/nodes/sn-bad").get_data(as_text=True)
    assert "bad PCR 0" in bad and "boom" in bad and "Needs attention" in bad
    assert "Restart" not in bad  # viewers get no command buttons


def _counter(app, serial: str) -> int:  # type: ignore[no-untyped-def]
    with _db(app).transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == serial))
        return s.scalar(select(Assignment.restart_counter).where(Assignment.node_id == node.id))


def test_a_restart_asks_first_and_then_raises_the_apis_counter(
    ui_client, ui_app, client, admin_headers
):
    _fleet(ui_app)
    ui = ui_client("operator")
    ask = ui.post("/ui/nodes/sn-good/command", {"command": "restart", "app": "web"})
    assert ask.status_code == 200 and "Restart the app?" in ask.get_data(as_text=True)
    assert _counter(ui_app, "sn-good") == 0
    done = ui.post(
        "/ui/nodes/sn-good/command", {"command": "restart", "app": "web", "confirmed": "yes"}
    )
    assert done.status_code == 302
    assert "requested (counter 1)" in ui.get("/ui/nodes/sn-good").get_data(as_text=True)
    api = client.post(
        "/api/v1/nodes/sn-good/commands",
        json={"command": "restart", "app": "web"},
        headers=admin_headers,
    )
    assert api.get_json()["counter"] == 2 == _counter(ui_app, "sn-good")
    with _db(ui_app).transaction() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == "node.restart")).all()
        assert {r.actor for r in rows} == {"user:operator1", "token:admin"}
        assert rows[0].detail == {"app": "web", "counter": 1}
        kinds = s.scalars(select(Event.kind)).all()
    assert kinds.count("command.restart") == 2


def test_reboot_and_purge_and_their_refusals(ui_client, ui_app):
    _fleet(ui_app)
    ui = ui_client("operator")
    ui.post("/ui/nodes/sn-gone/command", {"command": "reboot", "confirmed": "yes"})
    with _db(ui_app).transaction() as s:
        assert s.scalar(select(Node.reboot_counter).where(Node.serial == "sn-gone")) == 1
    not_there = ui.post(
        "/ui/nodes/sn-gone/command", {"command": "purge", "app": "web", "confirmed": "yes"}
    )
    page = ui.get(not_there.headers["Location"]).get_data(as_text=True)
    assert "purge refused: &#39;web&#39; does not run on &#39;sn-gone&#39;" in page
    unknown = ui.post("/ui/nodes/sn-gone/command", {"command": "format", "confirmed": "yes"})
    assert "Unknown command" in ui.get(unknown.headers["Location"]).get_data(as_text=True)


def test_assigning_and_labelling_from_the_node_page(ui_client, ui_app):
    _fleet(ui_app)
    ui = ui_client("operator")
    assert ui.post("/ui/nodes/sn-gone/apps", {"app": "web"}).status_code == 302
    assert ui.post("/ui/nodes/sn-gone/labels", {"labels": "site=lab\nring=1"}).status_code == 302
    bad = ui.post("/ui/nodes/sn-gone/labels", {"labels": "Bad Key=x"})
    assert bad.status_code == 422 and 'id="labels-error"' in bad.get_data(as_text=True)
    with _db(ui_app).transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == "sn-gone"))
        assert node.labels == {"site": "lab", "ring": "1"}
        assert s.scalar(select(Assignment).where(Assignment.node_id == node.id)).explicit
    assert ui.post("/ui/nodes/sn-gone/apps/web/remove").status_code == 302


def test_the_audit_log_filters_and_pages(ui_client, ui_app):
    ui = ui_client("operator")
    for i in range(60):
        ui.post("/ui/onboarding/claim", {"serial": f"sn-a{i:02d}"})
    ui.get("/ui/onboarding")  # shows (and so clears) the flashed messages
    page = ui.get("/ui/audit?action=node.claim").get_data(as_text=True)
    assert "1\u201350 of 60" in page and "sn-a59" in page and "sn-a09" not in page
    one = ui.get("/ui/audit?target=a07&actor=operator1").get_data(as_text=True)
    assert "sn-a07" in one and "1\u20131 of 1" in one
    assert "No entry matches" in ui.get("/ui/audit?actor=user:nobody").get_data(as_text=True)


def test_the_audit_log_filters_by_day(ui_client, ui_app):
    ui = ui_client("operator")
    ui.post("/ui/onboarding/claim", {"serial": "sn-old"})
    ui.post("/ui/onboarding/claim", {"serial": "sn-new"})
    ui.get("/ui/onboarding")  # shows (and so clears) the flashed messages
    with _db(ui_app).transaction() as s:
        old = s.scalar(select(AuditEvent).where(AuditEvent.target == "sn-old"))
        old.at = dt.datetime(2026, 1, 2, 12, 0)
    day = ui.get("/ui/audit?since=2026-01-02&until=2026-01-02").get_data(as_text=True)
    assert "sn-old" in day and "sn-new" not in day
    later = ui.get("/ui/audit?action=node.claim&since=2026-01-03").get_data(as_text=True)
    assert "sn-new" in later and "sn-old" not in later
    bad = ui.get("/ui/audit?since=yesterday")
    assert bad.status_code == 422 and "YYYY-MM-DD" in bad.get_data(as_text=True)


def test_a_crash_looping_app_is_on_the_overview_with_its_restarts_and_exit_code(ui_client, ui_app):  # type: ignore[no-untyped-def]
    looping = {
        "uuid": APP_UUID,
        "name": "boom",
        "state": "CRASHLOOP",
        "restarts": 7,
        "last_exit_code": 3,
        "last_stop_reason": "exited (code 3)",
        "backoff_s": 40.0,
    }
    with _db(ui_app).transaction() as s:
        _node(s, "sn-loop", trust="attested", apps=[looping])
    html = ui_client("viewer").get("/ui/").get_data(as_text=True)
    assert "sn-loop" in html
    assert "app boom crash-looping (7 restarts, exited (code 3))" in html


def test_a_node_without_port_lockdown_says_nothing_is_enforced(ui_client, ui_app):  # type: ignore[no-untyped-def]
    from protocol.ports import PortState

    with _db(ui_app).transaction() as s:
        node = _node(s, "sn-open", trust="attested")
        node.info = {**node.info, "ports": PortState.not_enforced().model_dump(mode="json")}
    html = ui_client("viewer").get("/ui/nodes/sn-open").get_data(as_text=True)
    assert "Port lockdown is off on this node: nothing is enforced." in html
