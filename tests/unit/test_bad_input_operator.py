"""Hostile input to the operator API: bad bodies are 413/422 and change nothing, path
parameters are typed, literal routes never reach ``<key>`` routes, 405 carries Allow,
the agent release target is only set by its own route, answers are strict JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.app import create_app
from controller.cli import _settings
from controller.domain.bodies import FINGERPRINT_PATTERN, ClaimBody
from controller.web.json_provider import StrictJSONProvider
from tests.fixtures.controller_server import free_port, init_controller

DEEP = b"[" * 10_000 + b"]" * 10_000
JSON_ROUTES = [
    ("POST", "/nodes/claim"),
    ("PATCH", "/nodes/sn-1"),
    ("POST", "/nodes/sn-1/commands"),
    ("POST", "/nodes/sn-1/apps"),
    ("POST", "/apps"),
    ("PUT", "/apps/web"),
    ("POST", "/networks"),
    ("POST", "/images/register"),
    ("POST", "/rollouts"),
    ("POST", "/rollouts/1/approve"),
    ("PUT", "/git/source"),
    ("PUT", "/nodes/sn-1/agent-release"),
    ("PATCH", "/trust/policy"),
    ("POST", "/trust/nodes/sn-1/revoke"),
]


def _strict(data: bytes) -> object:
    return json.loads(data, parse_constant=lambda c: pytest.fail(f"{c} in an answer"))


@pytest.fixture(scope="module")
def api(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One controller for the module (tests use distinct names); node sn-1 claimed."""
    cdir = init_controller(tmp_path_factory.mktemp("ctl") / "controller", free_port())
    app = create_app(_settings(cdir.data_dir))
    client, headers = app.test_client(), {"Authorization": f"Bearer {cdir.token}"}

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    assert call("POST", "/nodes/claim", json={"serial": "sn-1"}).status_code == 201
    return call


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (DEEP, 422),
        (b"\x00\xff", 422),
        (b'{"a": NaN}', 422),
        (b'{"a": 1e400}', 422),
        (b"0", 422),
        (b"false", 422),
        (b"[]", 422),
        (b"[" + b"1," * 600_000 + b"1]", 413),
    ],
)
def test_a_body_that_is_not_what_the_route_takes_is_refused(api, raw, status):
    for method, path in JSON_ROUTES:
        r = api(method, path, data=raw, content_type="application/json")
        assert r.status_code == status, (method, path, raw[:20], r.status_code, r.data[:200])
        assert _strict(r.data)["error"]["message"]  # type: ignore[index]


def test_approve_with_no_body_means_the_waiting_ring(api):
    r = api("POST", "/rollouts/1/approve", data=b"", content_type="application/json")
    assert r.status_code == 404 and "no rollout 1" in r.json["error"]["message"]


@pytest.mark.parametrize("rid", ["³", "\u0661", "1.0", "-1", "0x1", "9" * 19, " 1"])
def test_a_rollout_id_is_ascii_digits_or_404(api, rid):
    assert api("GET", f"/rollouts/{rid}").status_code == 404
    assert api("POST", f"/rollouts/{rid}/pause").status_code == 404


def test_get_nodes_claim_is_405_with_allow_not_a_node_lookup(api):
    r = api("GET", "/nodes/claim")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    assert r.json["error"]["code"] == "method_not_allowed"


def test_every_405_carries_allow(api):
    r = api("PUT", "/networks")
    assert r.status_code == 405 and set(r.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_claim_refuses_a_serial_that_is_a_path_word(api):
    r = api("POST", "/nodes/claim", json={"serial": "claim"})
    assert r.status_code == 422 and "reserved" in r.get_data(as_text=True)


def test_patch_node_refuses_an_agent_target(api):
    target = {  # well-formed, but made up: not a release, not signed by this controller
        "version": "9.9.9",
        "image": {"sha256": "a" * 64, "size": 1, "url": "https://x/"},
        "manifest": {"payload": "e30=", "sender_cert_sha256": "b" * 64, "signature": "eA=="},
    }
    r = api("PATCH", "/nodes/sn-1", json={"settings": {"agent": target}})
    assert r.status_code == 422 and "settings.agent" in r.get_data(as_text=True)
    assert "agent" not in api("GET", "/nodes/sn-1").json["settings"]


def test_patch_node_keeps_the_agent_target_and_checks_settings(api):
    r = api("PATCH", "/nodes/sn-1", json={"settings": {"config_interval_s": 0.5}})
    assert r.status_code == 422 and "settings.config_interval_s" in r.get_data(as_text=True)
    api("POST", "/nodes/claim", json={"serial": "sn-s"})
    r = api("PATCH", "/nodes/sn-s", json={"settings": {"debug_ssh": True}})
    assert r.status_code == 200 and r.json["settings"] == {"debug_ssh": True}


@pytest.mark.parametrize(
    "body",
    [
        {"name": "web", "kind": "container", "image": "img", "start_delay_s": 1e300},
        {"name": "web", "kind": "container", "image": "img", "start_delay_s": -1},
        {"name": "web", "kind": "container", "image": "img", "resources": {"vcpus": 10**18}},
    ],
)
def test_app_numbers_out_of_range_are_422(api, body):
    assert api("POST", "/apps", json=body).status_code == 422


def test_an_app_naming_an_image_that_is_not_stored_is_409_not_422(api):
    r = api("POST", "/apps", json={"name": "web", "kind": "container", "image": "nope"})
    assert r.status_code == 409 and r.json["error"]["details"][0]["field"] == "image"


def test_assign_answers_201_then_200(api):
    api(
        "POST",
        "/images/register",
        json={
            "name": "img",
            "format": "oci-archive",
            "sha256": "a" * 64,
            "size": 1,
            "url": "https://x/i",
        },
    )
    api("POST", "/apps", json={"name": "web", "kind": "container", "image": "img"})
    assert api("POST", "/nodes/sn-1/apps", json={"app": "web"}).status_code == 201
    assert api("POST", "/nodes/sn-1/apps", json={"app": "web"}).status_code == 200


def test_a_network_subnet_is_normalised_and_a_bad_one_is_422(api):
    r = api("POST", "/networks", json={"name": "lan", "subnet": "10.201.0.7/24"})
    assert r.status_code == 201 and r.json["subnet"] == "10.201.0.0/24"
    for bad in ("", "10.1.0.0/30", "010.1.0.0/24", "10.1.0.0/24\n"):
        assert api("POST", "/networks", json={"name": "x", "subnet": bad}).status_code == 422


def test_restart_without_an_app_is_422(api):
    r = api("POST", "/nodes/sn-1/commands", json={"command": "restart"})
    assert r.status_code == 422 and "needs an app" in r.get_data(as_text=True)


def test_the_openapi_document_states_the_rules(api):
    doc = api("GET", "/openapi.json").json
    claim = doc["paths"]["/api/v1/nodes/claim"]["post"]
    assert {"201", "401", "403", "409", "413", "422"} <= set(claim["responses"])
    rid = doc["paths"]["/api/v1/rollouts/{rid}"]["get"]["parameters"][0]["schema"]
    assert rid["type"] == "integer"
    selector = doc["components"]["schemas"]["AppBody"]["properties"]["selector"]["anyOf"][0]
    assert selector["additionalProperties"] is False
    delay = doc["components"]["schemas"]["AppBody"]["properties"]["start_delay_s"]
    assert delay["maximum"] == 3600
    approve = doc["paths"]["/api/v1/rollouts/{rid}/approve"]["post"]["requestBody"]
    assert approve["required"] is False


def test_the_json_provider_never_writes_nan_or_infinity():
    provider = StrictJSONProvider(Flask(__name__))
    assert provider.dumps({"x": 1.5}) == '{"x": 1.5}'
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            provider.dumps({"x": bad})


@pytest.mark.parametrize("value", [0, 1, "true", "yes", 0.0])
def test_a_boolean_field_takes_only_true_or_false(api, value):
    r = api("PUT", "/nodes/sn-1/agent-release", json={"accept_baseline": value, "version": None})
    assert r.status_code == 422, r.data[:300]
    assert "where true or false is expected" in r.json["error"]["details"][0]["error"]


def test_a_query_string_boolean_is_text(api):
    assert api("GET", "/remote/sessions?live=true").status_code == 200


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.from_regex(FINGERPRINT_PATTERN), st.text(max_size=80)))
def test_a_fingerprint_is_taken_exactly_when_the_document_says(value):
    stated = re.search(FINGERPRINT_PATTERN, value) is not None and len(value) <= 256
    try:
        ClaimBody.model_validate({"serial": "sn-9", "ek_sha256": value})
        taken = True
    except ValidationError:
        taken = False
    assert taken == stated, value
