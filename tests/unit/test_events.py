"""The event stream: app state transitions and config generations from a node's reports,
node presence (offline and back), attestation results; filtered by node, app, kind and
time through the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from controller.background import judge_presence
from controller.domain import events
from controller.store.models import App, Event, Image, Node, utcnow

UUID = "11111111-2222-4333-8444-555555555555"


def _info(generation: int, *apps: dict[str, Any]) -> dict[str, Any]:
    return {"agent_version": "0.1", "config_generation": generation, "apps": list(apps)}


def _app(state: str, **extra: Any) -> dict[str, Any]:
    return {"uuid": UUID, "name": "web", "state": state, **extra}


def _world(controller_app):  # type: ignore[no-untyped-def]
    services = controller_app.extensions["outpost"]
    with services.db.transaction() as s:
        image = Image(name="busybox", sha256="a" * 64, size=1, format="oci-archive")
        s.add(image)
        s.flush()
        s.add(App(uuid=UUID, name="web", kind="container", image_id=image.id, spec={}))
        s.add(
            Node(
                serial="sn-1",
                uuid="00000000-0000-4000-8000-000000000001",
                state="registered",
                last_seen=utcnow(),
            )
        )
    return services


def _kinds(services) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with services.db.transaction() as s:
        return [(e.kind, e.message) for e in reversed(events.query(s))]


def test_each_app_transition_and_new_generation_is_one_event(controller_app):  # type: ignore[no-untyped-def]
    services = _world(controller_app)
    reports = [
        _info(1, _app("DOWNLOADING")),
        _info(1, _app("DOWNLOADING", progress_pct=50)),  # same state: no event
        _info(2, _app("RUNNING")),
        _info(2, _app("CRASHLOOP", restarts=2, last_exit_code=3)),
        _info(2, _app("CRASHLOOP", restarts=5, last_exit_code=3)),  # still looping
        _info(3),
    ]
    before = None
    with services.db.transaction() as s:
        node = s.query(Node).one()
        for report in reports:
            events.app_changes(s, node, before, report)
            before = report
    assert _kinds(services) == [
        ("config.applied", "running config generation 1"),
        ("app.downloading", "web: DOWNLOADING"),
        ("config.applied", "running config generation 2"),
        ("app.running", "web: DOWNLOADING → RUNNING"),
        ("app.crashloop", "web: RUNNING → crash-looping after 2 restarts (exit code 3)"),
        ("config.applied", "running config generation 3"),
        ("app.removed", "web: removed from the node"),
    ]


def test_a_node_going_silent_is_offline_once_and_back_online_once(controller_app):  # type: ignore[no-untyped-def]
    services = _world(controller_app)
    interval = 60.0
    with services.db.transaction() as s:
        assert events.presence(s, interval) == 1  # first judged: online, no event
        assert events.presence(s, interval) == 0
        node = s.query(Node).one()
        node.last_seen = utcnow() - dt.timedelta(hours=1)
    with services.db.transaction() as s:
        assert events.presence(s, interval) == 1
        assert events.presence(s, interval) == 0
        s.query(Node).one().last_seen = utcnow()
    with services.db.transaction() as s:
        assert events.presence(s, interval) == 1
    kinds = [k for k, _ in _kinds(services)]
    assert kinds == ["node.offline", "node.online"]


def test_a_whole_fleet_going_offline_is_judged_in_batches_in_one_turn(controller_app):  # type: ignore[no-untyped-def]
    services = controller_app.extensions["outpost"]
    count = events.PRESENCE_BATCH * 2 + 7
    gone = utcnow() - dt.timedelta(hours=1)
    with services.db.transaction() as s:
        s.add_all(
            Node(serial=f"sn-{i}", uuid=f"00000000-0000-4000-8000-{i:012d}",
                 state="registered", last_seen=gone, presence="online")
            for i in range(count)
        )  # fmt: skip
    with services.db.transaction() as s:  # one batch: at most PRESENCE_BATCH nodes
        assert events.presence(s, 60.0) == events.PRESENCE_BATCH
    judge_presence(services)  # one turn of the job: the rest, batch after batch
    with services.db.transaction() as s:
        assert s.query(Node).filter(Node.presence == "offline").count() == count
        assert events.presence(s, 60.0) == 0
        assert s.query(Event).filter(Event.kind == "node.offline").count() == count


def test_the_api_filters_events_by_node_app_and_kind(controller_app, api):  # type: ignore[no-untyped-def]
    services = _world(controller_app)
    with services.db.transaction() as s:
        node = s.query(Node).one()
        events.app_changes(s, node, None, _info(1, _app("RUNNING")))
        events.attestation(s, node, "SUCCESS")
    all_events = api("GET", "/events").json["events"]
    assert {e["kind"] for e in all_events} == {"config.applied", "app.running", "attestation"}
    by_app = api("GET", "/events?app=web").json["events"]
    assert [(e["app"], e["kind"]) for e in by_app] == [("web", "app.running")]
    assert [e["kind"] for e in api("GET", "/events?kind=attestation").json["events"]] == [
        "attestation"
    ]
    assert len(api("GET", "/nodes/sn-1/events").json["events"]) == 3
    assert api("GET", "/events?since_s=-1").status_code == 422
    assert api("GET", "/events?app=nope").status_code == 404
