"""Least privilege: debug access to a node and agent releases are an admin's; an operator
manages everything else; assigning to a revoked node is refused and lists show it
revoked."""

from __future__ import annotations

import pytest

from controller.domain.tokens import create_token
from tests.device_sim import registered


@pytest.fixture
def operator(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with client.application.extensions["outpost"].db.transaction() as s:
        token = create_token(s, "op", "operator")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def claimed(client, admin_headers) -> str:  # type: ignore[no-untyped-def]
    client.post("/api/v1/nodes/claim", json={"serial": "sn-1"}, headers=admin_headers)
    return "sn-1"


@pytest.mark.parametrize(
    "debug",
    [{"debug_ssh": True}, {"ssh_authorized_keys": ["ssh-ed25519 AAAA x"]}, {"debug_console": True}],
)
def test_an_operator_cannot_open_debug_access(client, operator, admin_headers, claimed, debug):
    r = client.patch(f"/api/v1/nodes/{claimed}", json={"settings": debug}, headers=operator)
    assert (r.status_code, r.json["error"]["code"]) == (403, "forbidden")
    assert client.get(f"/api/v1/nodes/{claimed}", headers=admin_headers).json["settings"] == {}
    ok = client.patch(f"/api/v1/nodes/{claimed}", json={"settings": debug}, headers=admin_headers)
    assert ok.status_code == 200


def test_an_operator_still_sets_labels_and_other_settings(client, operator, claimed):
    body = {"labels": {"site": "a"}, "settings": {"usb_policy": "assigned-only"}}
    assert client.patch(f"/api/v1/nodes/{claimed}", json=body, headers=operator).status_code == 200


def test_agent_releases_are_an_admins(client, operator, claimed):
    upload = client.post(
        "/api/v1/agent-releases?version=9.9.9&sha256=" + "a" * 64, data=b"x", headers=operator
    )
    assert upload.status_code == 403
    target = client.put(
        f"/api/v1/nodes/{claimed}/agent-release", json={"version": "9.9.9"}, headers=operator
    )
    assert target.status_code == 403


def test_a_revoked_node_is_listed_revoked_and_gets_no_new_assignment(
    controller_dir, client, admin_headers, tmp_path
):
    registered(client, admin_headers, controller_dir.bundle(tmp_path / "b"), "sn-2")
    client.post("/api/v1/images/register", headers=admin_headers, json={
        "name": "img", "format": "raw", "sha256": "b" * 64, "size": 10,
        "url": "https://images.example/x",
    })  # fmt: skip
    client.post(
        "/api/v1/apps", json={"name": "a1", "kind": "vm", "image": "img"}, headers=admin_headers
    )
    client.post("/api/v1/trust/nodes/sn-2/revoke", json={"reason": "stolen"}, headers=admin_headers)

    r = client.post("/api/v1/nodes/sn-2/apps", json={"app": "a1"}, headers=admin_headers)

    assert (r.status_code, r.json["error"]["code"]) == (409, "revoked")
    (listed,) = client.get("/api/v1/nodes", headers=admin_headers).json["nodes"]
    assert listed["state"] == "revoked" and listed["assigned_apps"] == []
