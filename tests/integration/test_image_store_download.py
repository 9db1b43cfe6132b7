"""The node's image store against a real HTTPS controller datastore, with the signed URL a
registered, attested node's config carries (anonymous downloads are refused)."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from controller.store.key_files import DOWNLOAD_KEY_FILE
from controller.trust.downloads import signed_blob_url
from node_agent.client import ControllerClient
from node_agent.image_store import ImageError, ImageStore
from protocol.desired_state import ImageRef
from tests.device_sim import SimDevice

pytestmark = pytest.mark.integration
DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def uploaded(controller_server, tmp_path):  # type: ignore[no-untyped-def]
    r = controller_server.api(
        "POST",
        "/images",
        params={"name": "blob", "format": "raw", "sha256": SHA},
        data=DATA,
    )
    assert r.status_code == 201, r.text
    node = SimDevice.from_bundle(controller_server.bundle(tmp_path / "bundle"), "sn-dl")
    controller_server.api("POST", "/nodes/claim", json={"serial": "sn-dl"}).raise_for_status()
    ca = str(controller_server.root_ca)
    requests.post(
        f"{controller_server.url}/api/v1/device/register",
        json=node.register_body(),
        verify=ca,
        timeout=30,
    ).raise_for_status()
    node.attest_over_https(controller_server.url, ca)
    uuid = controller_server.api("GET", "/nodes/sn-dl").json()["uuid"]
    key = (controller_server.data_dir / DOWNLOAD_KEY_FILE).read_bytes().strip()
    controller_server.blob_url = signed_blob_url(controller_server.url, SHA, uuid, key)  # type: ignore[attr-defined]
    return controller_server


@pytest.fixture
def store(uploaded, tmp_path):  # type: ignore[no-untyped-def]
    client = ControllerClient(uploaded.url, uploaded.root_ca)
    return ImageStore(tmp_path / "images", client, max_bytes=64 * 1024 * 1024)


def _ref(server, sha=SHA, size=None, fmt="raw"):  # type: ignore[no-untyped-def]
    return ImageRef(
        name="blob",
        sha256=sha,
        size=len(DATA) if size is None else size,
        format=fmt,
        url=server.blob_url,
    )


def test_an_image_is_downloaded_verified_and_stored_by_digest(store, uploaded):
    phases = []
    path = store.ensure(_ref(uploaded), lambda p, d, t: phases.append(p))
    assert path.read_bytes() == DATA and path.name == SHA
    assert phases[0] == "DOWNLOADING" and phases[-1] == "VERIFYING"


def test_a_partial_download_is_resumed_from_where_it_stopped(store, uploaded):
    partial = store.root / "partial" / SHA
    partial.write_bytes(DATA[: 1024 * 1024])
    seen = []
    store.ensure(_ref(uploaded), lambda p, d, t: seen.append(d))
    assert seen[0] > 1024 * 1024  # the first chunk counted from the resumed offset
    assert store.path(SHA).read_bytes() == DATA


def test_an_image_whose_digest_does_not_match_is_never_stored(store, uploaded):
    wrong = "0" * 64
    ref = _ref(uploaded, sha=wrong)
    with pytest.raises(ImageError, match="does not match"):
        store.ensure(ref)
    assert not store.has(wrong)
    assert not (store.root / "partial" / wrong).exists()


def test_an_image_above_the_size_cap_is_refused_before_download(uploaded, tmp_path):
    client = ControllerClient(uploaded.url, uploaded.root_ca)
    small = ImageStore(tmp_path / "small", client, max_bytes=1024)
    with pytest.raises(ImageError, match="cap"):
        small.ensure(_ref(uploaded))


def test_a_server_sending_more_than_declared_is_cut_off(store, uploaded):
    with pytest.raises(ImageError, match="more than the declared"):
        store.ensure(_ref(uploaded, size=1024))
    assert not store.has(SHA)


def test_a_corrupted_blob_is_found_and_deleted_at_start(store, uploaded):
    store.ensure(_ref(uploaded))
    store.path(SHA).write_bytes(b"bit rot")
    assert store.verify_all() == [SHA]
    assert not store.has(SHA)


def test_a_blob_not_of_its_declared_format_is_refused_and_not_stored(store, uploaded):
    with pytest.raises(ImageError, match=r"kernel-bundle.*not a readable uncompressed tar"):
        store.ensure(_ref(uploaded, fmt="kernel-bundle"))
    assert not store.has(SHA)
    assert list((store.root / "partial").iterdir()) == []
