"""Operator API for agent releases: upload (checked, refused whole when wrong), list,
and pointing a node at a release (a signed manifest in its settings, the new code
digest in its attestation baseline, the fleet allowlist respected)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from attestation import envelope
from controller.domain.agent_releases import inspect_bundle
from controller.store.models import Node
from controller.trust.state import trust_of
from protocol.agent_bundle import PACKAGES
from protocol.agent_bundle import build as build_bundle
from protocol.desired_state import AgentManifest, NodeSettings

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    return build_bundle("2.0.0", tmp_path_factory.mktemp("rel") / "a.tgz", src)


def _upload(client, headers, data: bytes, version: str = "2.0.0", sha: str | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/agent-releases",
        query_string={"version": version, "sha256": sha or hashlib.sha256(data).hexdigest()},
        data=data,
        headers=headers,
    )


def test_an_uploaded_release_is_listed_with_its_code_digest(client, admin_headers, tarball):  # type: ignore[no-untyped-def]
    r = _upload(client, admin_headers, tarball.read_bytes())
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["code_digest"] == inspect_bundle(tarball)[1]
    releases = client.get("/api/v1/agent-releases", headers=admin_headers).get_json()["releases"]
    assert [(x["version"], x["format"], x["nodes"]) for x in releases] == [
        ("2.0.0", "agent-bundle", [])
    ]


def test_a_release_whose_bundle_declares_another_version_is_refused(client, admin_headers, tarball):  # type: ignore[no-untyped-def]
    r = _upload(client, admin_headers, tarball.read_bytes(), version="2.0.1")
    assert r.status_code == 422
    assert "declares version 2.0.0" in r.get_json()["error"]["message"]
    assert client.get("/api/v1/agent-releases", headers=admin_headers).get_json()["releases"] == []


def test_an_upload_that_is_not_a_bundle_is_refused(client, admin_headers):  # type: ignore[no-untyped-def]
    r = _upload(client, admin_headers, b"not a tarball at all")
    assert r.status_code == 422
    assert r.get_json()["error"]["code"] == "bad_bundle"


def test_an_upload_whose_sha256_differs_is_refused(client, admin_headers, tarball):  # type: ignore[no-untyped-def]
    r = _upload(client, admin_headers, tarball.read_bytes(), sha="ab" * 32)
    assert r.status_code == 422
    assert r.get_json()["error"]["code"] == "sha256_mismatch"


def test_a_bad_version_string_is_refused_with_the_field_named(client, admin_headers, tarball):  # type: ignore[no-untyped-def]
    r = _upload(client, admin_headers, tarball.read_bytes(), version="2.0")
    assert r.status_code == 422
    assert r.get_json()["error"]["details"][0]["field"] == "version"


def test_a_node_targeting_a_release_gets_a_signed_manifest_and_baseline(
    client, admin_headers, tarball, controller_app
):  # type: ignore[no-untyped-def]
    assert _upload(client, admin_headers, tarball.read_bytes()).status_code == 201
    client.post("/api/v1/nodes/claim", json={"serial": "n1"}, headers=admin_headers)
    services = controller_app.extensions["outpost"]
    with services.db.transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == "n1"))
        trust_of(s, node).baseline = {"agent": ["11" * 32], "pcrs": {}}
    r = client.put(
        "/api/v1/nodes/n1/agent-release", json={"version": "2.0.0"}, headers=admin_headers
    )
    assert r.status_code == 200, r.get_json()
    digest = inspect_bundle(tarball)[1]
    settings = client.get("/api/v1/nodes/n1", headers=admin_headers).get_json()["settings"]
    target = NodeSettings.model_validate(settings).agent
    assert target is not None and target.version == "2.0.0"
    signing = services.pki.signing
    opened = envelope.open_envelope(
        target.manifest.model_dump(), {signing.sha256: signing.cert}.get, max_skew_s=None
    )
    manifest = AgentManifest.model_validate(opened.body)
    assert (manifest.sha256, manifest.code_digest) == (target.image.sha256, digest)
    with services.db.transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == "n1"))
        assert trust_of(s, node).baseline["agent"] == sorted(["11" * 32, digest])
    releases = client.get("/api/v1/agent-releases", headers=admin_headers).get_json()["releases"]
    assert releases[0]["nodes"] == ["n1"]


def test_a_release_the_fleet_allowlist_does_not_list_is_refused(client, admin_headers, tarball):  # type: ignore[no-untyped-def]
    assert _upload(client, admin_headers, tarball.read_bytes()).status_code == 201
    client.post("/api/v1/nodes/claim", json={"serial": "n1"}, headers=admin_headers)
    r = client.patch(
        "/api/v1/trust/policy", json={"agent_allowlist": ["22" * 32]}, headers=admin_headers
    )
    assert r.status_code == 200, r.get_json()
    r = client.put(
        "/api/v1/nodes/n1/agent-release", json={"version": "2.0.0"}, headers=admin_headers
    )
    assert r.status_code == 409
    assert "allowlist" in r.get_json()["error"]["message"]
    settings = client.get("/api/v1/nodes/n1", headers=admin_headers).get_json()["settings"]
    assert "agent" not in settings


def test_an_unknown_release_is_404_and_null_clears_the_target(client, admin_headers, tarball):  # type: ignore[no-untyped-def]
    client.post("/api/v1/nodes/claim", json={"serial": "n1"}, headers=admin_headers)
    r = client.put(
        "/api/v1/nodes/n1/agent-release", json={"version": "9.9.9"}, headers=admin_headers
    )
    assert r.status_code == 404
    assert _upload(client, admin_headers, tarball.read_bytes()).status_code == 201
    for version in ("2.0.0", None):
        r = client.put(
            "/api/v1/nodes/n1/agent-release", json={"version": version}, headers=admin_headers
        )
        assert r.status_code == 200
    settings = client.get("/api/v1/nodes/n1", headers=admin_headers).get_json()["settings"]
    assert "agent" not in settings


def test_a_viewer_cannot_upload_a_release(client, controller_app, tarball):  # type: ignore[no-untyped-def]
    from controller.domain.tokens import create_token

    with controller_app.extensions["outpost"].db.transaction() as s:
        token = create_token(s, "v", "viewer")
    r = _upload(client, {"Authorization": f"Bearer {token}"}, tarball.read_bytes())
    assert r.status_code == 403


def test_the_node_page_shows_the_agent_update_the_node_reports(ui_client, ui_app):  # type: ignore[no-untyped-def]
    with ui_app.extensions["outpost"].db.transaction() as s:
        s.add(
            Node(
                serial="n2",
                uuid="00000000-0000-4000-8000-000000000002",
                state="registered",
                info={
                    "agent_version": "0.1.0",
                    "config_generation": 1,
                    "agent_update": {
                        "version": "2.0.1",
                        "state": "failed",
                        "reason": "did not commit within 600 s",
                        "at": 1.0,
                    },
                },
            )
        )
    html = ui_client("viewer").get("/ui/nodes/n2").get_data(as_text=True)
    assert "Agent update" in html
    assert "2.0.1: failed (did not commit within 600 s)" in html
