"""User-data on app definitions through the operator API: validated and size-capped, carried
to the node in its signed config, and when secret never shown (answers to anyone, the audit
log) except as a digest; a definition sent back with the placeholder keeps the secret.
What an app reports through its node's metrics is served per app (API)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from controller.domain.tokens import create_token
from protocol.app_config import MAX_USER_DATA_BYTES
from tests.device_sim import SimDevice

BLOB = b"image bytes"
SHA = hashlib.sha256(BLOB).hexdigest()
SECRET = "#cloud-config\npassword: hunter2-do-not-show\n"


@pytest.fixture
def api(api):  # type: ignore[no-untyped-def]
    api("POST", f"/images?name=img&format=oci-archive&sha256={SHA}", data=BLOB)
    return api


@pytest.fixture
def viewer(controller_app):  # type: ignore[no-untyped-def]
    with controller_app.extensions["outpost"].db.transaction() as s:
        token = create_token(s, "v", "viewer")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def node(client, api, controller_dir, tmp_path):  # type: ignore[no-untyped-def]
    dev = SimDevice.from_bundle(controller_dir.bundle(tmp_path / "b"), "sn-1")
    api("POST", "/nodes/claim", json={"serial": "sn-1"})
    dev.uuid = client.post("/api/v1/device/register", json=dev.register_body()).json["node_uuid"]
    return dev


def _app(**extra):  # type: ignore[no-untyped-def]
    return {"name": "web", "kind": "container", "image": "img", **extra}


def _node_config(client, dev):  # type: ignore[no-untyped-def]
    headers = dev.attest_with(client)
    wire = client.post(
        "/api/v1/device/config", json=dev.signed({"config_hash": ""}), headers=headers
    ).json
    return json.loads(base64.b64decode(wire["config"]["payload"]))["body"]


def test_user_data_reaches_the_node_in_its_config(client, api, node):
    assert api("POST", "/apps", json=_app(user_data="mode: face\n")).status_code == 201
    api("POST", "/nodes/sn-1/apps", json={"app": "web"})
    (app,) = _node_config(client, node)["apps"]
    assert app["user_data"] == "mode: face\n"
    assert "user_data_secret" not in app  # a default stays off the wire (older agents)


def test_a_secret_user_data_is_shown_to_nobody_but_reaches_the_node(client, api, node, viewer):
    created = api("POST", "/apps", json=_app(user_data=SECRET, user_data_secret=True))
    assert created.status_code == 201
    api("POST", "/nodes/sn-1/apps", json={"app": "web"})
    shown = [
        created.get_data(as_text=True),
        api("GET", "/apps/web").get_data(as_text=True),
        api("GET", "/apps").get_data(as_text=True),
        client.get("/api/v1/apps/web", headers=viewer).get_data(as_text=True),
        api("GET", "/audit").get_data(as_text=True),
    ]
    for text in shown:
        assert "hunter2" not in text
    assert created.json["user_data"].startswith("<secret: ")
    (app,) = _node_config(client, node)["apps"]
    assert app["user_data"] == SECRET


def test_a_secret_sent_back_as_its_placeholder_is_kept_and_a_new_one_is_audited(client, api, node):
    shown = api("POST", "/apps", json=_app(user_data=SECRET, user_data_secret=True)).json
    api("POST", "/nodes/sn-1/apps", json={"app": "web"})
    body = {k: v for k, v in shown.items() if k not in ("uuid",)}
    assert api("PUT", "/apps/web", json=body).status_code == 200
    assert _node_config(client, node)["apps"][0]["user_data"] == SECRET
    assert api("GET", "/audit?action=app.update").json["events"] == []

    new = {**body, "user_data": "password: other\n"}
    assert api("PUT", "/apps/web", json=new).status_code == 200
    assert _node_config(client, node)["apps"][0]["user_data"] == "password: other\n"
    (entry,) = api("GET", "/audit?action=app.update").json["events"]
    assert entry["before"]["user_data"] != entry["after"]["user_data"]
    assert "other" not in json.dumps(entry) and "hunter2" not in json.dumps(entry)


@pytest.mark.parametrize(
    "user_data",
    ["x" * (MAX_USER_DATA_BYTES + 1), "a\x00b", "é" * (MAX_USER_DATA_BYTES // 2 + 1)],
    ids=["too-long", "nul", "too-many-utf8-bytes"],
)
def test_bad_user_data_is_refused_and_nothing_is_stored(api, user_data):
    r = api("POST", "/apps", json=_app(user_data=user_data))
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["field"] == "user_data"
    assert api("GET", "/apps").json["apps"] == []


def test_user_data_at_the_limit_is_accepted(api):
    assert api("POST", "/apps", json=_app(user_data="y" * MAX_USER_DATA_BYTES)).status_code == 201


def _sample(app_uuid: str, at: float, fps: float) -> dict:  # type: ignore[type-arg]
    return {
        "at": at,
        "node": {
            "cpu_seconds_total": 5.0,
            "memory_used_bytes": 1,
            "memory_total_bytes": 2,
            "disk_used_bytes": 3,
            "disk_total_bytes": 4,
            "net_rx_bytes_total": 5,
            "net_tx_bytes_total": 6,
            "uptime_s": 7.0,
        },
        "apps": [
            {
                "uuid": app_uuid,
                "cpu_seconds_total": 1.5,
                "memory_used_bytes": 9,
                "reported": {
                    "values": {"fps": fps, "detections": 2},
                    "labels": {"device": "CPU", "detector": "openvino-face"},
                    "at": at,
                },
            }
        ],
    }


def test_what_an_app_reports_is_served_per_node_latest_and_over_time(client, api, node, viewer):
    app_uuid = api("POST", "/apps", json=_app()).json["uuid"]
    api("POST", "/nodes/sn-1/apps", json={"app": "web"})
    for at, fps in ((100.0, 4.0), (105.0, 5.5)):
        signed = node.signed(_sample(app_uuid, at, fps))
        assert client.post("/api/v1/device/metrics", json=signed).status_code == 200
    services = client.application.extensions["outpost"]
    services.writes.flush(services.db)
    got = client.get("/api/v1/apps/web/metrics", headers=viewer).json
    (entry,) = got["nodes"]
    assert entry["node"] == "sn-1"
    assert entry["reported"]["values"] == {"fps": 5.5, "detections": 2}
    assert entry["reported"]["labels"]["device"] == "CPU"
    assert [p["values"]["fps"] for p in entry["series"]] == [4.0, 5.5]
    assert api("GET", "/apps/web/metrics?since_s=-1").status_code == 422
    page = client.get("/ui/apps/web")  # not logged in: redirected, never a 500
    assert page.status_code in (302, 303)
