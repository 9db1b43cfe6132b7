"""A verified blob must also be what its format says before it is used."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from node_agent.image_formats import FormatError, check_format


def _tar(path: Path, members: dict[str, bytes], symlink: str = "") -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/shadow"
            tar.addfile(info)
    return path


def _qcow2(path: Path, *extra: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *extra, str(path), "1M"], check=True)
    return path


def test_raw_accepts_any_bytes(tmp_path):
    (tmp_path / "r").write_bytes(b"\x00anything")
    check_format(tmp_path / "r", "raw")


def test_a_qcow2_image_is_accepted(tmp_path):
    check_format(_qcow2(tmp_path / "disk.qcow2"), "qcow2")


def test_a_qcow2_with_a_backing_file_is_refused(tmp_path):
    base = _qcow2(tmp_path / "base.qcow2")
    overlay = _qcow2(tmp_path / "o.qcow2", "-b", str(base), "-F", "qcow2")
    with pytest.raises(FormatError, match="backing file"):
        check_format(overlay, "qcow2")


def test_a_qcow2_with_an_external_data_file_is_refused(tmp_path):
    disk = _qcow2(tmp_path / "d.qcow2", "-o", f"data_file={tmp_path / 'data.raw'}")
    with pytest.raises(FormatError, match="data file"):
        check_format(disk, "qcow2")


def test_a_file_without_qcow2_magic_is_not_a_qcow2(tmp_path):
    (tmp_path / "x").write_bytes(b"not a disk" * 100)
    with pytest.raises(FormatError, match="no qcow2 magic"):
        check_format(tmp_path / "x", "qcow2")


def test_a_truncated_qcow2_is_refused(tmp_path):
    disk = _qcow2(tmp_path / "t.qcow2")
    disk.write_bytes(disk.read_bytes()[:64])
    with pytest.raises(FormatError, match="qemu-img"):
        check_format(disk, "qcow2")


def test_a_kernel_bundle_with_kernel_initrd_and_cmdline_is_accepted(tmp_path):
    members = {"./kernel": b"k", "initrd": b"i", "cmdline": b"console=ttyS0"}
    check_format(_tar(tmp_path / "b.tar", members), "kernel-bundle")


def test_a_kernel_bundle_without_a_kernel_is_refused(tmp_path):
    with pytest.raises(FormatError, match="no 'kernel'"):
        check_format(_tar(tmp_path / "b.tar", {"initrd": b"i"}), "kernel-bundle")


def test_a_kernel_bundle_with_a_foreign_member_is_refused(tmp_path):
    bundle = _tar(tmp_path / "b.tar", {"kernel": b"k", "../../etc/cron.d/x": b"evil"})
    with pytest.raises(FormatError, match="not one of the regular files"):
        check_format(bundle, "kernel-bundle")


def test_a_kernel_bundle_with_a_symlink_is_refused(tmp_path):
    with pytest.raises(FormatError, match="not one of the regular files"):
        check_format(_tar(tmp_path / "b.tar", {}, symlink="kernel"), "kernel-bundle")


def test_a_kernel_bundle_that_is_not_a_tar_is_refused(tmp_path):
    (tmp_path / "b").write_bytes(b"\x7fELF" + b"\x00" * 2000)
    with pytest.raises(FormatError, match="not a readable uncompressed tar"):
        check_format(tmp_path / "b", "kernel-bundle")


def test_an_oci_archive_with_its_layout_files_is_accepted(tmp_path):
    members = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": b"{}"}
    check_format(_tar(tmp_path / "o.tar", members), "oci-archive")


def test_a_docker_archive_is_not_an_oci_archive(tmp_path):
    with pytest.raises(FormatError, match=r"lacks oci-layout, index\.json"):
        check_format(_tar(tmp_path / "d.tar", {"manifest.json": b"[]"}), "oci-archive")
