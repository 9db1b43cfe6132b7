"""Secret env values: the node gets them, operators (who set them) see them; a viewer sees
``<secret>`` in the API and the UI, and the audit log never holds them in clear."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from controller.domain.tokens import create_token
from controller.domain.users import create_user
from tests.device_sim import registered
from tests.fixtures.browser import UiClient

SECRET = "s3cr3t-database-password-7f1c"
OCI = b"an oci archive, as far as this test cares"


@pytest.fixture
def api_as(client):  # type: ignore[no-untyped-def]
    def make(role: str) -> dict[str, str]:
        with client.application.extensions["outpost"].db.transaction() as s:
            token = create_token(s, f"tok-{role}", role)
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def app_with_secret(client, admin_headers, api_as):  # type: ignore[no-untyped-def]
    sha = hashlib.sha256(OCI).hexdigest()
    client.post(
        f"/api/v1/images?name=img&format=oci-archive&sha256={sha}", data=OCI, headers=admin_headers
    )
    body = {
        "name": "db",
        "kind": "container",
        "image": "img",
        "env": {"MODE": "prod"},
        "secret_env": {"DB_PASSWORD": SECRET},
    }
    r = client.post("/api/v1/apps", json=body, headers=api_as("operator"))
    assert r.status_code == 201, r.json
    return body


def test_a_viewer_never_sees_a_secret_value(client, api_as, app_with_secret):
    viewer = api_as("viewer")
    for path in ("/api/v1/apps", "/api/v1/apps/db"):
        r = client.get(path, headers=viewer)
        assert SECRET not in r.get_data(as_text=True), path
    shown = client.get("/api/v1/apps/db", headers=viewer).json
    assert shown["secret_env"] == {"DB_PASSWORD": "<secret>"} and shown["env"] == {"MODE": "prod"}
    assert client.get("/api/v1/apps/db", headers=api_as("admin")).json["secret_env"] == {
        "DB_PASSWORD": SECRET
    }


def test_the_audit_log_never_holds_a_secret_in_clear(client, admin_headers, app_with_secret):
    changed = {**app_with_secret, "secret_env": {"DB_PASSWORD": SECRET + "-rotated"}}
    assert client.put("/api/v1/apps/db", json=changed, headers=admin_headers).status_code == 200
    events = client.get("/api/v1/audit?limit=100", headers=admin_headers).json["events"]
    text = json.dumps(events)
    assert SECRET not in text
    update = next(e for e in events if e["action"] == "app.update")
    assert update["detail"]["secret_env_changed"] == ["DB_PASSWORD"]
    assert update["after"]["secret_env"] == {"DB_PASSWORD": "<secret>"}


def test_the_node_gets_secret_env_with_its_env(
    controller_dir, client, admin_headers, app_with_secret, tmp_path
):  # type: ignore[no-untyped-def]
    sim = registered(client, admin_headers, controller_dir.bundle(tmp_path / "bundle"), "sn-1")
    client.post("/api/v1/nodes/sn-1/apps", json={"app": "db"}, headers=admin_headers)
    wire = client.post(
        "/api/v1/device/config",
        json=sim.signed({"config_hash": ""}),
        headers=sim.attest_with(client),
    ).json["config"]
    (app,) = json.loads(base64.b64decode(wire["payload"]))["body"]["apps"]
    assert app["env"] == {"MODE": "prod", "DB_PASSWORD": SECRET}


def test_a_name_in_both_env_and_secret_env_is_refused(client, admin_headers, app_with_secret):
    both = {**app_with_secret, "env": {"DB_PASSWORD": "x"}}
    r = client.put("/api/v1/apps/db", json=both, headers=admin_headers)
    assert r.status_code == 422


def test_the_ui_shows_a_viewer_no_secret_value(client, app_with_secret):
    with client.application.extensions["outpost"].db.transaction() as s:
        create_user(s, "viewer1", "viewer", "viewer-password-for-tests")
    ui = UiClient(client.application)
    assert ui.login("viewer1", "viewer-password-for-tests").status_code == 302
    page = ui.get("/ui/apps/db").get_data(as_text=True)
    assert "DB_PASSWORD=&lt;secret&gt;" in page and SECRET not in page
