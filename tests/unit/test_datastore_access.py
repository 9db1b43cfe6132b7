"""Who may download a datastore blob: the node a config's signed URL names (registered, not
revoked, attested), and operators; anyone else is refused before a byte is sent."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from controller.domain.tokens import create_token
from controller.store.models import Node
from controller.trust.state import drop_tokens
from tests.device_sim import SimDevice, registered

BLOB = b"an image the datastore holds, as far as this test cares"
SHA = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def node(controller_dir, client, admin_headers, tmp_path):  # type: ignore[no-untyped-def]
    """A registered, attested node whose config names the blob (an app on it)."""
    r = client.post(
        f"/api/v1/images?name=img&format=raw&sha256={SHA}", data=BLOB, headers=admin_headers
    )
    assert r.status_code == 201, r.json
    app = {"name": "vm1", "kind": "vm", "image": "img"}
    assert client.post("/api/v1/apps", json=app, headers=admin_headers).status_code == 201
    sim = registered(client, admin_headers, controller_dir.bundle(tmp_path / "bundle"), "sn-1")
    client.post("/api/v1/nodes/sn-1/apps", json={"app": "vm1"}, headers=admin_headers)
    return sim


def _image_url(client, sim: SimDevice) -> str:  # type: ignore[no-untyped-def]
    headers = sim.attest_with(client)
    wire = client.post(
        "/api/v1/device/config", json=sim.signed({"config_hash": ""}), headers=headers
    ).json["config"]
    body = json.loads(base64.b64decode(wire["payload"]))["body"]
    (app,) = body["apps"]
    url = urlsplit(app["image"]["url"])
    return f"{url.path}?{url.query}"


def _token(client, role: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with client.application.extensions["outpost"].db.transaction() as s:
        secret = create_token(s, f"t-{role}", role)
    return {"Authorization": f"Bearer {secret}"}


def test_an_anonymous_download_is_refused(client, node):
    r = client.get(f"/datastore/sha256/{SHA}")
    assert (r.status_code, r.json["error"]["code"]) == (401, "unauthenticated")
    assert BLOB not in r.get_data()


def test_a_viewer_token_is_refused_and_an_operator_token_served(client, node):
    assert (
        client.get(f"/datastore/sha256/{SHA}", headers=_token(client, "viewer")).status_code == 403
    )
    ranged = client.get(
        f"/datastore/sha256/{SHA}", headers={**_token(client, "operator"), "Range": "bytes=3-"}
    )
    assert ranged.status_code == 206 and ranged.get_data() == BLOB[3:]


def test_the_node_downloads_with_the_signed_url_its_config_carries(client, node):
    path = _image_url(client, node)
    assert set(parse_qs(urlsplit(path).query)) == {"node", "sig"}
    assert client.get(path).get_data() == BLOB


def test_a_signed_url_serves_no_other_blob_and_no_altered_signature(client, admin_headers, node):
    path = _image_url(client, node)
    other = path.replace(SHA, "0" * 64)
    assert client.get(other).status_code == 403
    query = parse_qs(urlsplit(path).query)
    forged = f"/datastore/sha256/{SHA}?node={query['node'][0]}&sig={'0' * 40}"
    assert client.get(forged).status_code == 403


def test_a_revoked_node_downloads_nothing_even_with_its_url(client, admin_headers, node):
    path = _image_url(client, node)
    client.post("/api/v1/trust/nodes/sn-1/revoke", json={"reason": "stolen"}, headers=admin_headers)
    r = client.get(path)
    assert (r.status_code, r.json["error"]["code"]) == (403, "revoked")


def test_a_node_that_failed_attestation_downloads_nothing(client, controller_app, node):
    path = _image_url(client, node)
    with controller_app.extensions["outpost"].db.transaction() as s:
        drop_tokens(s, s.scalar(select(Node).where(Node.serial == "sn-1")))
    r = client.get(path)
    assert (r.status_code, r.json["error"]["code"]) == (403, "not_attested")
