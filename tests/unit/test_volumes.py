"""volumes: root overlays and data disks made with the real qemu-img in a temp dir."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from node_agent.runtime.base import PermanentError
from node_agent.volumes import (
    ROOT_DISK,
    Volumes,
    data_disk_path,
    image_info,
    remove_all,
    usage,
)
from protocol.desired_state import DataDisk

MIB = 1 << 20


def _img(path: Path, fmt: str, size: str = "8M", *extra: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *extra, str(path), size], check=True)
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "app"
    d.mkdir()
    return d


def test_root_overlay_layers_on_a_raw_base_without_writing_it(tmp_path, work):
    base = _img(tmp_path / "base.raw", "raw")
    before = base.read_bytes()
    root = Volumes().root_overlay("a", work, base, "raw")
    info = image_info(root.path, "qcow2")
    assert (info.backing, info.backing_format, info.virtual_size) == (str(base), "raw", 8 * MIB)
    assert base.read_bytes() == before
    assert root.path.stat().st_mode & 0o777 == 0o600


def test_root_overlay_is_reused_while_the_image_is_the_same(tmp_path, work):
    base = _img(tmp_path / "base.qcow2", "qcow2")
    first = Volumes().root_overlay("a", work, base, "qcow2").path.stat().st_ino
    again = Volumes().root_overlay("a", work, base, "qcow2").path.stat().st_ino
    assert first == again


def test_a_new_image_gets_a_new_overlay(tmp_path, work):
    old = _img(tmp_path / "old.qcow2", "qcow2")
    new = _img(tmp_path / "new.qcow2", "qcow2")
    Volumes().root_overlay("a", work, old, "qcow2")
    root = Volumes().root_overlay("a", work, new, "qcow2")
    assert image_info(root.path, "qcow2").backing == str(new)


def test_an_image_with_its_own_backing_file_is_refused(tmp_path, work):
    host_file = _img(tmp_path / "host.raw", "raw")
    sneaky = _img(tmp_path / "sneaky.qcow2", "qcow2", "8M", "-F", "raw", "-b", str(host_file))
    with pytest.raises(PermanentError, match="backing file of its own"):
        Volumes().root_overlay("a", work, sneaky, "qcow2")
    assert not (work / ROOT_DISK).exists()


def test_a_larger_disk_mib_grows_the_overlay(tmp_path, work):
    base = _img(tmp_path / "base.qcow2", "qcow2")
    Volumes().root_overlay("a", work, base, "qcow2")
    root = Volumes().root_overlay("a", work, base, "qcow2", disk_mib=32)
    assert image_info(root.path, "qcow2").virtual_size == 32 * MIB


def test_data_disk_grows_but_never_shrinks(work):
    vols = Volumes()
    vols.data_disk("a", work, DataDisk(name="db", size_mib=8))
    grown = vols.data_disk("a", work, DataDisk(name="db", size_mib=16))
    assert image_info(grown.path, "qcow2").virtual_size == 16 * MIB
    with pytest.raises(PermanentError, match="shrinking"):
        vols.data_disk("a", work, DataDisk(name="db", size_mib=8))


def test_prepare_deletes_data_disks_no_longer_asked_for(tmp_path, work):
    base = _img(tmp_path / "base.qcow2", "qcow2")
    vols = Volumes()
    vols.prepare("a", work, base, "qcow2", 0, [DataDisk(name="db", size_mib=8)])
    root, data = vols.prepare("a", work, base, "qcow2", 0, [])
    assert data == () and root is not None and root.path.exists()
    assert not data_disk_path(work, "db").exists()


def test_usage_counts_allocated_bytes_and_remove_all_deletes_only_disks(tmp_path, work):
    base = _img(tmp_path / "base.qcow2", "qcow2")
    Volumes().prepare("a", work, base, "qcow2", 0, [DataDisk(name="db", size_mib=8)])
    (work / "console.log").write_text("kept")
    assert 0 < usage(work) < 8 * MIB  # thin: far less than the virtual sizes
    assert sorted(remove_all(work)) == ["data-db.qcow2", ROOT_DISK]
    assert usage(work) == 0 and (work / "console.log").exists()


def test_only_qcow2_and_raw_bases_are_layered(tmp_path, work):
    with pytest.raises(PermanentError, match="cannot layer"):
        Volumes().root_overlay("a", work, tmp_path / "x.tar", "kernel-bundle")


def _app_with(**fields: object) -> dict[str, object]:
    return {
        "uuid": "6a1c0d52-0000-4000-8000-000000000001",
        "name": "cam",
        "kind": "vm",
        "image": {
            "name": "disk",
            "sha256": "ab" * 32,
            "size": 1,
            "url": "https://c/x",
            "format": "qcow2",
        },
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"disks": [{"name": "d", "size_mib": 0}]}, "greater than or equal"),
        ({"disks": [{"name": "d", "size_mib": 1024 * 1024 + 1}]}, "less than or equal"),
        ({"disks": [{"name": "../etc", "size_mib": 1}]}, "pattern"),
        ({"disks": [{"name": "a" * 21, "size_mib": 1}]}, "pattern"),
        ({"disks": [{"name": f"d{i}", "size_mib": 1} for i in range(5)]}, "at most 4"),
        ({"disks": [{"name": "d", "size_mib": 1}] * 2}, "listed twice"),
        (
            {
                "kind": "container",
                "image": {**_app_with()["image"], "format": "oci-archive"},  # type: ignore[dict-item]
                "vtpm": True,
            },
            "VMs only",
        ),
    ],
)
def test_data_disks_in_the_spec_are_bounded(fields: dict[str, object], reason: str) -> None:
    from pydantic import ValidationError

    from protocol.desired_state import AppSpec

    with pytest.raises(ValidationError, match=reason):
        AppSpec.model_validate(_app_with(**fields))
