"""Deterministic outputs: the same inputs give byte-identical tars, gzips and images."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from images import build, fstree, kernel_bundle
from images.common import gzip_deterministic
from images.manifest import Manifest


def test_tar_bytes_do_not_depend_on_entry_order() -> None:
    entries = [fstree.directory("a"), fstree.file("a/x", b"1"), fstree.symlink("b", "a/x")]
    assert fstree.tar_bytes(entries) == fstree.tar_bytes(list(reversed(entries)))


def test_gzip_output_is_stable() -> None:
    assert gzip_deterministic(b"hello" * 1000) == gzip_deterministic(b"hello" * 1000)


def test_kernel_bundle_has_exactly_kernel_initrd_cmdline(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar"
    path.write_bytes(kernel_bundle.pack(kernel_bundle.KernelBundle(b"K", b"I", "console=ttyS0")))
    assert kernel_bundle.read(path) == kernel_bundle.KernelBundle(b"K", b"I", "console=ttyS0")


@pytest.mark.slow
def test_building_again_elsewhere_yields_the_same_sha256(
    built_images: Manifest, tmp_path: Path
) -> None:
    (tmp_path / "cache").mkdir()
    for deb in (built_images.directory / "cache").glob("*.deb"):
        shutil.copy(deb, tmp_path / "cache" / deb.name)  # no second download
    again = build.build_all(tmp_path, force=True)
    assert [i.sha256 for i in again.images] == [i.sha256 for i in built_images.images]


@pytest.mark.slow
def test_rebuild_with_unchanged_inputs_reuses_outputs(
    built_images: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(
        built_images.directory, tmp_path / "images", ignore=shutil.ignore_patterns("*.deb")
    )

    def no_build(*_args: object) -> bytes:
        raise AssertionError("rebuilt although its inputs did not change")

    monkeypatch.setattr(
        build, "RECIPES", tuple(dataclasses.replace(r, build=no_build) for r in build.RECIPES)
    )
    again = build.build_all(tmp_path / "images")
    assert [i.sha256 for i in again.images] == [i.sha256 for i in built_images.images]
