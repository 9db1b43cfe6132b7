"""Operator API: token auth and roles, validation errors that name fields, no partial changes."""

from __future__ import annotations

import hashlib

import pytest

from controller.domain.tokens import create_token


@pytest.fixture
def viewer(controller_app):  # type: ignore[no-untyped-def]
    with controller_app.extensions["outpost"].db.transaction() as s:
        token = create_token(s, "v", "viewer")
    return {"Authorization": f"Bearer {token}"}


def test_the_operator_api_refuses_requests_without_a_token(client):
    assert client.get("/api/v1/nodes").status_code == 401


def test_the_operator_api_refuses_an_unknown_token(client):
    r = client.get("/api/v1/nodes", headers={"Authorization": "Bearer op_nope"})
    assert r.status_code == 401


def test_a_viewer_can_list_but_not_claim(client, viewer):
    assert client.get("/api/v1/nodes", headers=viewer).status_code == 200
    assert (
        client.post("/api/v1/nodes/claim", json={"serial": "a"}, headers=viewer).status_code == 403
    )


def test_claiming_twice_is_idempotent_and_audited(client, admin_headers):
    for status in (201, 200):  # created, then "claimed already"
        assert (
            client.post(
                "/api/v1/nodes/claim", json={"serial": "a1"}, headers=admin_headers
            ).status_code
            == status
        )
    assert len(client.get("/api/v1/nodes", headers=admin_headers).json["nodes"]) == 1
    actions = [
        e["action"] for e in client.get("/api/v1/audit", headers=admin_headers).json["events"]
    ]
    assert actions == ["node.claim", "node.claim"]


def test_an_app_with_a_bad_env_name_is_refused_naming_the_field(client, admin_headers):
    data = b"x"
    sha = hashlib.sha256(data).hexdigest()
    client.post(
        f"/api/v1/images?name=i&format=oci-archive&sha256={sha}", data=data, headers=admin_headers
    )
    r = client.post(
        "/api/v1/apps",
        json={"name": "a", "kind": "container", "image": "i", "env": {"1BAD": "x"}},
        headers=admin_headers,
    )
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["field"].startswith("env")
    assert client.get("/api/v1/apps", headers=admin_headers).json["apps"] == []


def test_an_app_whose_kind_does_not_fit_its_image_is_a_conflict(client, admin_headers):
    sha = hashlib.sha256(b"k").hexdigest()
    client.post(
        f"/api/v1/images?name=k&format=kernel-bundle&sha256={sha}", data=b"k", headers=admin_headers
    )
    r = client.post(
        "/api/v1/apps", json={"name": "a", "kind": "container", "image": "k"}, headers=admin_headers
    )
    assert r.status_code == 409 and "kernel-bundle" in r.json["error"]["details"][0]["error"]


def test_an_unknown_field_in_an_app_is_refused(client, admin_headers):
    r = client.post(
        "/api/v1/apps",
        json={"name": "a", "kind": "vm", "image": "i", "gpu": True},
        headers=admin_headers,
    )
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["field"] == "gpu"


def test_an_image_upload_with_the_wrong_sha256_is_refused_and_not_stored(
    client, admin_headers, controller_dir
):
    wrong = "0" * 64
    r = client.post(
        f"/api/v1/images?name=i&format=oci-archive&sha256={wrong}",
        data=b"abc",
        headers=admin_headers,
    )
    assert r.status_code == 422 and r.json["error"]["code"] == "sha256_mismatch"
    assert client.get("/api/v1/images", headers=admin_headers).json["images"] == []
    assert list((controller_dir.data_dir / "datastore" / "sha256").iterdir()) == []


def test_a_stored_image_is_served_by_digest_with_ranges(client, admin_headers):
    data = b"0123456789"
    sha = hashlib.sha256(data).hexdigest()
    client.post(
        f"/api/v1/images?name=i&format=oci-archive&sha256={sha}", data=data, headers=admin_headers
    )
    r = client.get(f"/datastore/sha256/{sha}", headers={"Range": "bytes=4-"})
    assert r.status_code == 206 and r.data == b"456789"


def test_unassigning_an_app_that_is_not_assigned_returns_404(client, admin_headers):
    client.post("/api/v1/nodes/claim", json={"serial": "a1"}, headers=admin_headers)
    r = client.delete("/api/v1/nodes/a1/apps/nope", headers=admin_headers)
    assert r.status_code == 404


def test_an_image_larger_than_the_device_body_cap_can_be_uploaded(client, admin_headers):
    data = b"x" * (3 * 1024 * 1024)  # the device API caps bodies at 1 MiB; images may be larger
    sha = hashlib.sha256(data).hexdigest()
    r = client.post(
        f"/api/v1/images?name=big&format=oci-archive&sha256={sha}", data=data, headers=admin_headers
    )
    assert r.status_code == 201 and r.json["size"] == len(data)
