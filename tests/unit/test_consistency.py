"""The database consistency check: finds stored non-finite or out-of-range numbers and rows
the API's own rules refuse; a database written through the API has none."""

from __future__ import annotations

from controller.consistency import check_database
from controller.store.models import App, Node, Rollout


def _db(app):  # type: ignore[no-untyped-def]
    return app.extensions["outpost"].db


def _seed(api) -> None:  # type: ignore[no-untyped-def]
    image = {"name": "img", "format": "oci-archive", "sha256": "a" * 64, "size": 1}
    assert api("POST", "/images/register", json=image | {"url": "https://x/i"}).status_code == 201
    assert (
        api("POST", "/networks", json={"name": "lan", "subnet": "10.3.0.0/24"}).status_code == 201
    )
    app = {"name": "web", "kind": "container", "image": "img", "env": {"A": "b"}}
    assert api("POST", "/apps", json=app | {"networks": [{"name": "lan"}]}).status_code == 201
    assert api("POST", "/nodes/claim", json={"serial": "sn-1"}).status_code == 201
    assert api("PATCH", "/nodes/sn-1", json={"labels": {"site": "lab"}}).status_code == 200


def test_a_database_written_through_the_api_is_consistent(api, controller_app):
    _seed(api)
    with _db(controller_app).transaction() as s:
        assert check_database(s) == []


def test_non_finite_and_out_of_range_values_and_broken_rules_are_found(api, controller_app):
    _seed(api)
    with _db(controller_app).transaction() as s:
        node = s.query(Node).filter_by(serial="sn-1").one()
        node.metrics = {"at": float("inf"), "node": {}}
        node.info = {"agent_version": "x", "config_generation": 10**18}
        node.labels = {"Bad Key": "v"}
        app = s.query(App).filter_by(name="web").one()
        app.spec = {**app.spec, "env": {"1BAD": "x"}, "start_delay_s": float("nan")}
        s.add(Rollout(app_id=app.id, rings=[{"soak_s": 60, "deadline_s": 30}]))
    with _db(controller_app).transaction() as s:
        found = {(p.table, p.field.split(".")[0].split("[")[0]) for p in check_database(s)}
    assert {
        ("nodes", "metrics"),
        ("nodes", "info"),
        ("nodes", "labels"),
        ("apps", "spec"),
        ("apps", "(row)"),
        ("rollouts", "rings"),
    } <= found
