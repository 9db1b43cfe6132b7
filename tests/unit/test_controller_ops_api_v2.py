"""Operator API: app updates, labels, commands as counters, networks, images by
URL, audit with before/after, the OpenAPI document."""

from __future__ import annotations

import hashlib

import pytest

from controller.api.openapi import openapi_path, route_doc
from tests.device_sim import SimDevice

BLOB = b"image bytes"
SHA = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def api(api):  # type: ignore[no-untyped-def]
    call = api
    call("POST", f"/images?name=img&format=oci-archive&sha256={SHA}", data=BLOB)
    return call


@pytest.fixture
def node(client, api, controller_dir, tmp_path):  # type: ignore[no-untyped-def]
    dev = SimDevice.from_bundle(controller_dir.bundle(tmp_path / "b"), "sn-1")
    api("POST", "/nodes/claim", json={"serial": "sn-1"})
    dev.uuid = client.post("/api/v1/device/register", json=dev.register_body()).json["node_uuid"]
    return dev


def _config(client, dev):  # type: ignore[no-untyped-def]
    import base64
    import json

    headers = dev.attest_with(client)
    wire = client.post(
        "/api/v1/device/config", json=dev.signed({"config_hash": ""}), headers=headers
    ).json
    return json.loads(base64.b64decode(wire["config"]["payload"]))["body"]


def test_every_operator_route_is_described_in_the_openapi_document(controller_app, api):
    doc = api("GET", "/openapi.json").json
    for rule in controller_app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1") and "/device/" not in rule.rule:
            assert route_doc(controller_app.view_functions[rule.endpoint]), rule.rule
            path = openapi_path(rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert method.lower() in doc["paths"][path], (method, path)


def test_the_openapi_document_carries_the_body_schemas(api):
    doc = api("GET", "/openapi.json").json
    body = doc["paths"]["/api/v1/apps"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/AppBody")
    assert "AppBody" in doc["components"]["schemas"]


def test_replacing_an_app_keeps_its_uuid_and_audits_before_and_after(api):
    created = api("POST", "/apps", json={"name": "web", "kind": "container", "image": "img"}).json
    r = api(
        "PUT",
        "/apps/web",
        json={"name": "web", "kind": "container", "image": "img", "command": ["sleep", "9"]},
    )
    assert r.status_code == 200 and r.json["uuid"] == created["uuid"]
    (entry,) = [e for e in api("GET", "/audit?action=app.update").json["events"]]
    assert entry["before"]["command"] == [] and entry["after"]["command"] == ["sleep", "9"]


def test_an_app_selected_by_labels_reaches_matching_nodes_only(client, api, node):
    api(
        "POST",
        "/apps",
        json={"name": "web", "kind": "container", "image": "img", "selector": {"site": "qa"}},
    )
    assert _config(client, node)["apps"] == []
    api("PATCH", "/nodes/sn-1", json={"labels": {"site": "qa"}})
    assert [a["name"] for a in _config(client, node)["apps"]] == ["web"]
    api("PATCH", "/nodes/sn-1", json={"labels": {"site": "prod"}})
    assert _config(client, node)["apps"] == []


def test_restart_and_purge_commands_raise_the_instance_counters(client, api, node):
    api("POST", "/apps", json={"name": "web", "kind": "container", "image": "img"})
    api("POST", "/nodes/sn-1/apps", json={"app": "web"})
    api("POST", "/nodes/sn-1/commands", json={"command": "restart", "app": "web"})
    api("POST", "/nodes/sn-1/commands", json={"command": "restart", "app": "web"})
    api("POST", "/nodes/sn-1/commands", json={"command": "purge", "app": "web"})
    (app,) = _config(client, node)["apps"]
    assert (app["restart_counter"], app["purge_counter"]) == (2, 1)


def test_a_reboot_command_raises_the_node_counter(client, api, node):
    api("POST", "/nodes/sn-1/commands", json={"command": "reboot"})
    assert _config(client, node)["reboot_counter"] == 1


def test_a_restart_of_an_app_not_on_the_node_is_refused(api, node):
    api("POST", "/apps", json={"name": "web", "kind": "container", "image": "img"})
    r = api("POST", "/nodes/sn-1/commands", json={"command": "restart", "app": "web"})
    assert r.status_code == 404


def test_an_app_on_a_network_brings_the_network_into_the_config(client, api, node):
    assert (
        api("POST", "/networks", json={"name": "lan", "subnet": "10.77.0.0/24"}).status_code == 201
    )
    api(
        "POST",
        "/apps",
        json={
            "name": "web",
            "kind": "container",
            "image": "img",
            "networks": [{"name": "lan", "ports": [{"host": 8080, "guest": 80}]}],
        },
    )
    api("POST", "/nodes/sn-1/apps", json={"app": "web"})
    doc = _config(client, node)
    assert doc["networks"] == [{"name": "lan", "subnet": "10.77.0.0/24", "nat": False}]


def test_an_app_on_an_unknown_network_is_a_conflict_naming_the_field(api):
    r = api(
        "POST",
        "/apps",
        json={"name": "web", "kind": "container", "image": "img", "networks": [{"name": "nope"}]},
    )
    assert r.status_code == 409 and r.json["error"]["details"][0]["field"] == "networks"


def test_overlapping_networks_are_refused(api):
    api("POST", "/networks", json={"name": "a", "subnet": "10.1.0.0/16"})
    r = api("POST", "/networks", json={"name": "b", "subnet": "10.1.2.0/24"})
    assert r.status_code == 409 and "overlaps" in r.json["error"]["message"]


def test_node_settings_are_validated_naming_the_field(api, node):
    r = api("PATCH", "/nodes/sn-1", json={"settings": {"config_interval_s": 0}})
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["field"] == "settings.config_interval_s"


def test_node_settings_reach_the_node(client, api, node):
    api("PATCH", "/nodes/sn-1", json={"settings": {"debug_ssh": True}})
    assert _config(client, node)["settings"]["debug_ssh"] is True


def test_an_image_registered_by_url_is_fetched_from_there(client, api, node):
    api(
        "POST",
        "/images/register",
        json={
            "name": "ext",
            "format": "oci-archive",
            "sha256": "b" * 64,
            "size": 5,
            "url": "https://mirror.example/x.tar",
        },
    )
    api("POST", "/apps", json={"name": "web", "kind": "container", "image": "ext"})
    api("POST", "/nodes/sn-1/apps", json={"app": "web"})
    assert _config(client, node)["apps"][0]["image"]["url"] == "https://mirror.example/x.tar"


def test_an_image_in_use_cannot_be_deleted(api):
    api("POST", "/apps", json={"name": "web", "kind": "container", "image": "img"})
    assert api("DELETE", "/images/img").status_code == 409


def test_the_audit_log_filters_by_action(api):
    api("POST", "/nodes/claim", json={"serial": "a"})
    api("POST", "/apps", json={"name": "web", "kind": "container", "image": "img"})
    actions = {e["action"] for e in api("GET", "/audit?action=node.claim").json["events"]}
    assert actions == {"node.claim"}
