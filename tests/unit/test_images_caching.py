"""build_all's stamps: an image is rebuilt only when its inputs or its output file changed.

These tests swap the real recipes for fakes, so they need no Debian tools and run fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from images import build
from images.manifest import load_manifest


class FakeRecipes:
    """Two recipes whose inputs the test controls and whose builds are counted."""

    def __init__(self) -> None:
        self.inputs: dict[str, Any] = {"vm": 1, "ct": 1}
        self.builds: list[str] = []

    def recipe(self, name: str, key: str, kind: str) -> build._Recipe:
        def build_fn(_inputs: build._Inputs) -> bytes:
            self.builds.append(name)
            return f"{name} built from {self.inputs[key]}".encode()

        return build._Recipe(
            name, f"{name}.tar", "fake", kind, lambda _i: {"v": self.inputs[key]}, build_fn
        )


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> FakeRecipes:
    fakes = FakeRecipes()
    recipes = (fakes.recipe("testvm", "vm", "vm"), fakes.recipe("busybox", "ct", "container"))
    monkeypatch.setattr(build, "RECIPES", recipes)
    return fakes


def test_first_build_builds_every_image(fakes: FakeRecipes, tmp_path: Path) -> None:
    build.build_all(tmp_path)
    assert fakes.builds == ["testvm", "busybox"]


def test_second_build_with_unchanged_inputs_builds_nothing(
    fakes: FakeRecipes, tmp_path: Path
) -> None:
    first = build.build_all(tmp_path)
    fakes.builds.clear()
    assert build.build_all(tmp_path) == first
    assert fakes.builds == []


def test_changed_input_rebuilds_only_that_image(fakes: FakeRecipes, tmp_path: Path) -> None:
    build.build_all(tmp_path)
    fakes.builds.clear()
    fakes.inputs["ct"] = 2
    manifest = build.build_all(tmp_path)
    assert fakes.builds == ["busybox"]
    assert manifest.get("busybox").path.read_bytes() == b"busybox built from 2"


def test_tampered_output_is_rebuilt(fakes: FakeRecipes, tmp_path: Path) -> None:
    manifest = build.build_all(tmp_path)
    manifest.get("testvm").path.write_bytes(b"tampered")
    fakes.builds.clear()
    build.build_all(tmp_path)
    assert fakes.builds == ["testvm"]


def test_force_rebuilds_everything(fakes: FakeRecipes, tmp_path: Path) -> None:
    build.build_all(tmp_path)
    fakes.builds.clear()
    build.build_all(tmp_path, force=True)
    assert fakes.builds == ["testvm", "busybox"]


def test_manifest_on_disk_matches_returned_manifest(fakes: FakeRecipes, tmp_path: Path) -> None:
    manifest = build.build_all(tmp_path)
    assert load_manifest(tmp_path) == manifest
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert [set(item) for item in raw["images"]] == [
        {"name", "file", "format", "sha256", "size", "kind"}
    ] * 2


def test_cli_builds_into_out_dir(fakes: FakeRecipes, tmp_path: Path) -> None:
    assert build.main(["--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.glob("*.tar")} == {"testvm.tar", "busybox.tar"}
