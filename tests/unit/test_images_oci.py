"""The OCI archive writer (images.oci): a valid, self-consistent OCI image layout in a tar."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from images import fstree, oci

REF = "outpost/test:1"


@pytest.fixture
def layer_tar() -> bytes:
    return fstree.tar_bytes(
        [
            fstree.directory("bin"),
            fstree.file("bin/busybox", b"\x7fELF not really", 0o755),
            fstree.symlink("bin/sh", "busybox"),
        ]
    )


@pytest.fixture
def archive(layer_tar: bytes) -> dict[str, bytes]:
    data = oci.build_oci_archive(layer_tar, oci.ImageConfig(cmd=("/bin/sh",)), REF)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _blob(archive: dict[str, bytes], descriptor: dict) -> bytes:
    algorithm, _, hexdigest = descriptor["digest"].partition(":")
    assert algorithm == "sha256"
    blob = archive[f"blobs/sha256/{hexdigest}"]
    assert hashlib.sha256(blob).hexdigest() == hexdigest
    assert len(blob) == descriptor["size"]
    return blob


def _manifest(archive: dict[str, bytes]) -> dict:
    index = json.loads(archive["index.json"])
    (descriptor,) = index["manifests"]
    return json.loads(_blob(archive, descriptor))


def test_layout_has_oci_layout_file_and_index(archive: dict[str, bytes]) -> None:
    assert json.loads(archive["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(archive["index.json"])
    assert index["schemaVersion"] == 2
    assert index["manifests"][0]["mediaType"] == oci.MEDIA_MANIFEST


def test_index_annotates_the_reference_name(archive: dict[str, bytes]) -> None:
    descriptor = json.loads(archive["index.json"])["manifests"][0]
    assert descriptor["annotations"] == {oci.REF_NAME_ANNOTATION: REF}


def test_index_manifest_config_and_layer_digests_and_sizes_match(
    archive: dict[str, bytes],
) -> None:
    manifest = _manifest(archive)
    assert manifest["config"]["mediaType"] == oci.MEDIA_CONFIG
    _blob(archive, manifest["config"])
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == oci.MEDIA_LAYER_GZIP
    _blob(archive, layer)
    blobs = {name for name in archive if name.startswith("blobs/")}
    assert len(blobs) == 3


def test_config_diff_id_is_sha256_of_the_uncompressed_layer(
    archive: dict[str, bytes], layer_tar: bytes
) -> None:
    manifest = _manifest(archive)
    config = json.loads(_blob(archive, manifest["config"]))
    layer = gzip.decompress(_blob(archive, manifest["layers"][0]))
    assert layer == layer_tar
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"],
    }


def test_config_has_cmd_and_path_and_no_entrypoint(archive: dict[str, bytes]) -> None:
    config = json.loads(_blob(archive, _manifest(archive)["config"]))
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert any(env.startswith("PATH=") for env in config["config"]["Env"])
    assert "Entrypoint" not in config["config"]


def test_same_layer_and_config_give_identical_archive_bytes(layer_tar: bytes) -> None:
    config = oci.ImageConfig(cmd=("/bin/sh",))
    first = oci.build_oci_archive(layer_tar, config, REF)
    assert oci.build_oci_archive(layer_tar, config, REF) == first


def test_archive_members_are_sorted_root_owned_and_dated_epoch(layer_tar: bytes) -> None:
    data = oci.build_oci_archive(layer_tar, oci.ImageConfig(cmd=("/bin/sh",)), REF)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert all((m.uid, m.gid, m.mtime) == (0, 0, 0) for m in members)
