"""Config delivery: signed by the config-signing cert, 'unchanged' by hash, generations."""

from __future__ import annotations

import copy
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from attestation import pki
from node_agent.config_verifier import ConfigRejected, ConfigVerifier
from protocol.desired_state import DesiredState
from tests.device_sim import SimDevice

OCI = b"not really an oci archive, but the datastore only checks sha256"


@pytest.fixture
def node(client, admin_headers, controller_dir, tmp_path):  # type: ignore[no-untyped-def]
    dev = SimDevice.from_bundle(controller_dir.bundle(tmp_path / "bundle"), "sn-1")
    client.post("/api/v1/nodes/claim", json={"serial": "sn-1"}, headers=admin_headers)
    r = client.post("/api/v1/device/register", json=dev.register_body())
    dev.uuid = r.json["node_uuid"]  # type: ignore[attr-defined]
    dev.headers = dev.attest_with(client)  # type: ignore[attr-defined]
    return dev


@pytest.fixture
def verifier(controller_dir):  # type: ignore[no-untyped-def]
    pki_dir = controller_dir.data_dir / "pki"
    root = pki.load_cert((pki_dir / "root-ca.pem").read_bytes())
    return ConfigVerifier(root, [pki.load_cert((pki_dir / "signing.pem").read_bytes())])


def _add_app(client, admin_headers, name="web"):  # type: ignore[no-untyped-def]
    sha = hashlib.sha256(OCI).hexdigest()
    client.post(
        f"/api/v1/images?name=img-{name}&format=oci-archive&sha256={sha}",
        data=OCI,
        headers=admin_headers,
    )
    r = client.post(
        "/api/v1/apps",
        json={"name": name, "kind": "container", "image": f"img-{name}"},
        headers=admin_headers,
    )
    assert r.status_code == 201, r.json


def _config(client, node, have=""):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/device/config", json=node.signed({"config_hash": have}), headers=node.headers
    )


def test_config_is_signed_and_verifies_under_the_pinned_root(client, node, verifier):
    r = _config(client, node)
    assert r.status_code == 200 and r.json["unchanged"] is False
    doc = verifier.verify(r.json["config"], node.uuid)
    assert doc.node_uuid == node.uuid and doc.apps == []


def test_config_answers_unchanged_when_the_hash_matches(client, node, verifier):
    doc = verifier.verify(_config(client, node).json["config"], node.uuid)
    r = _config(client, node, have=doc.content_hash())
    assert r.json == {"unchanged": True, "config": None}


def test_assigning_an_app_raises_the_generation_and_carries_the_image(
    client, admin_headers, node, verifier
):
    first = verifier.verify(_config(client, node).json["config"], node.uuid)
    _add_app(client, admin_headers)
    client.post("/api/v1/nodes/sn-1/apps", json={"app": "web"}, headers=admin_headers)
    second = verifier.verify(
        _config(client, node, first.content_hash()).json["config"], node.uuid, first
    )
    assert second.generation == first.generation + 1
    (app,) = second.apps
    assert app.image.sha256 == hashlib.sha256(OCI).hexdigest()
    url = urlsplit(app.image.url)
    assert url.path.endswith(f"/datastore/sha256/{app.image.sha256}")
    assert set(parse_qs(url.query)) == {"node", "sig"}  # signed for this node


def test_a_tampered_config_is_rejected_by_the_node(client, node, verifier):
    wire = copy.deepcopy(_config(client, node).json["config"])
    payload = bytearray(wire["payload"].encode())
    payload[10] = ord("A") if payload[10] != ord("A") else ord("B")
    wire["payload"] = payload.decode()
    with pytest.raises(ConfigRejected):
        verifier.verify(wire, node.uuid)


def test_a_config_signed_by_the_tls_key_is_rejected_by_the_node(
    client, node, verifier, controller_dir
):
    from attestation import envelope

    pki_dir = controller_dir.data_dir / "pki"
    tls = pki.load_identity(pki_dir / "tls.pem", pki_dir / "tls.key")
    doc = DesiredState(node_uuid=node.uuid, generation=99)
    with pytest.raises(ConfigRejected):
        verifier.add_signers([tls.cert])
    with pytest.raises(ConfigRejected):
        verifier.verify(envelope.seal(doc.model_dump(mode="json"), tls), node.uuid)


def test_an_older_generation_is_refused_by_the_node(client, admin_headers, node, verifier):
    old = verifier.verify(_config(client, node).json["config"], node.uuid)
    _add_app(client, admin_headers)
    client.post("/api/v1/nodes/sn-1/apps", json={"app": "web"}, headers=admin_headers)
    new = verifier.verify(_config(client, node).json["config"], node.uuid)
    old_wire = _config(client, node).json["config"]  # same content as `new`
    assert verifier.verify(old_wire, node.uuid, new).generation == new.generation
    with pytest.raises(ConfigRejected, match="older"):
        verifier.verify(_resign(old, client), node.uuid, new)


def _resign(doc, client):  # type: ignore[no-untyped-def]
    from attestation import envelope

    signing = client.application.extensions["outpost"].pki.signing
    return envelope.seal(doc.model_dump(mode="json"), signing)


def test_config_from_an_unknown_device_returns_403(client, controller_dir):
    stranger = SimDevice("sn-x", pki.make_device_cert("x"))
    r = client.post("/api/v1/device/config", json=stranger.signed({"config_hash": ""}))
    assert r.status_code == 403


def test_info_is_stored_and_shown_to_operators(client, admin_headers, node):
    app_status = {"uuid": "00000000-0000-4000-8000-000000000001", "name": "web", "state": "RUNNING"}
    body = {"agent_version": "t", "config_generation": 1, "apps": [app_status]}
    assert client.post("/api/v1/device/info", json=node.signed(body)).status_code == 200
    shown = client.get("/api/v1/nodes/sn-1", headers=admin_headers).json
    assert shown["info"]["apps"][0]["state"] == "RUNNING"


def test_info_with_an_unknown_state_returns_422_and_changes_nothing(client, admin_headers, node):
    body = {
        "agent_version": "t",
        "config_generation": 1,
        "apps": [
            {"uuid": "00000000-0000-4000-8000-000000000001", "name": "web", "state": "DANCING"}
        ],
    }
    r = client.post("/api/v1/device/info", json=node.signed(body))
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["field"] == "apps.0.state"
    assert client.get("/api/v1/nodes/sn-1", headers=admin_headers).json["info"] == {}
