"""manifest.json reading and writing (images.manifest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from images.common import ImageBuildError, sha256_bytes
from images.manifest import ImageArtifact, Manifest, load_manifest, write_manifest


def _manifest(directory: Path) -> Manifest:
    (directory / "testvm.tar").write_bytes(b"vm")
    artifact = ImageArtifact(
        "testvm", "testvm.tar", "kernel-bundle", sha256_bytes(b"vm"), 2, "vm", directory
    )
    return Manifest(directory, (artifact,))


def test_written_manifest_loads_back_equal(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    write_manifest(manifest)
    assert load_manifest(tmp_path) == manifest


def test_artifact_path_is_file_in_manifest_directory(tmp_path: Path) -> None:
    artifact = _manifest(tmp_path).get("testvm")
    assert artifact.path == tmp_path / "testvm.tar"
    assert artifact.digest == f"sha256:{sha256_bytes(b'vm')}"


def test_verify_detects_a_modified_file(tmp_path: Path) -> None:
    artifact = _manifest(tmp_path).get("testvm")
    artifact.verify()
    artifact.path.write_bytes(b"VM")
    with pytest.raises(ImageBuildError, match="sha256"):
        artifact.verify()


def test_unknown_image_name_raises_key_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="nope"):
        _manifest(tmp_path).get("nope")


def test_missing_manifest_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match=r"python -m images\.build"):
        load_manifest(tmp_path)
