"""Inference image recipes without building them: config disks and what triggers a rebuild."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from images import inference_build, inference_rootfs, inference_vm_image

needs_mtools = pytest.mark.skipif(
    not (shutil.which("mkfs.fat") or Path("/usr/sbin/mkfs.fat").exists())
    or not shutil.which("mtype"),
    reason="needs dosfstools and mtools",
)


@needs_mtools
def test_config_disk_is_a_fat_image_labelled_for_the_guest(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    video.write_bytes(b"RIFF....AVI ")
    image = inference_vm_image.config_disk(
        tmp_path / "cfg.fat", "source: {url: x}\n", {"clip.avi": video}
    )
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    label = subprocess.run(
        ["mlabel", "-s", "-i", str(image), "::"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    content = subprocess.run(
        ["mtype", "-i", str(image), "::inference.yaml"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert inference_vm_image.CONFIG_LABEL in label
    assert content == "source: {url: x}\n"


def test_image_inputs_are_stable_between_calls() -> None:
    packages, sources = inference_vm_image.PACKAGES, inference_vm_image.SOURCES
    first = inference_build._inputs("vm", packages, sources)
    assert inference_build._inputs("vm", packages, sources) == first


def test_a_changed_app_source_changes_the_image_inputs(tmp_path: Path, monkeypatch) -> None:
    packages, sources = inference_vm_image.PACKAGES, inference_vm_image.SOURCES
    before = inference_build._inputs("vm", packages, sources)
    changed = tmp_path / "app.py"
    changed.write_text("changed = True\n")
    monkeypatch.setattr(inference_rootfs, "app_sources", lambda: [changed])
    after = inference_build._inputs("vm", packages, sources)
    assert after["app"] != before["app"]
    assert after["base"] == before["base"]  # the Debian stage is reused


def test_the_app_unit_runs_the_app_from_the_installed_site() -> None:
    unit = inference_vm_image.APP_UNIT
    assert "ExecStart=/usr/bin/python3 -m inference_vm run --config /run/outpost/" in unit
    assert f"PYTHONPATH={inference_rootfs.PYTHONPATH}" in unit
    assert "getty.target" in inference_vm_image.MASKED
