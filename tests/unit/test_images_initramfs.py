"""The newc cpio writer (images.initramfs) and the testvm initramfs tree built with it."""

from __future__ import annotations

import gzip
import shutil
import stat
import subprocess

import pytest

from images import fstree, initramfs, testvm
from images.common import gzip_deterministic
from images.fstree import Kind

FAKE_BUSYBOX = b"\x7fELF" + bytes(range(256)) * 3


@pytest.fixture
def tree() -> list[fstree.Entry]:
    return testvm.initramfs_tree(FAKE_BUSYBOX, {"button.ko": b"mod1", "evdev.ko": b"mod22"})


def test_newc_archive_parses_back_to_the_same_entries(tree: list[fstree.Entry]) -> None:
    parsed = initramfs.read_newc(initramfs.write_newc(tree))
    assert parsed == fstree.normalized(tree)


def test_newc_archive_starts_with_magic_and_ends_with_trailer(tree: list[fstree.Entry]) -> None:
    data = initramfs.write_newc(tree)
    assert data.startswith(initramfs.MAGIC)
    assert initramfs.TRAILER.encode() in data[-128:]
    assert len(data) % 4 == 0


def test_init_is_an_executable_regular_file(tree: list[fstree.Entry]) -> None:
    entries = {entry.path: entry for entry in initramfs.read_newc(initramfs.write_newc(tree))}
    init = entries["init"]
    assert init.kind is Kind.FILE
    assert init.mode & stat.S_IXUSR
    assert init.data.startswith(b"#!/bin/sh\n")


def test_initramfs_has_busybox_shell_and_console(tree: list[fstree.Entry]) -> None:
    entries = {entry.path: entry for entry in tree}
    assert entries["bin/busybox"].data == FAKE_BUSYBOX
    assert entries["bin/busybox"].mode == 0o755
    assert entries["bin/sh"].target == "busybox"
    assert entries["dev/console"].rdev == (5, 1)


def test_init_prints_marker_and_honours_poweroff_argument() -> None:
    assert f'echo "{testvm.MARKER}"' in testvm.INIT
    assert f'*" {testvm.POWEROFF_ARG} "*)' in testvm.INIT
    assert "poweroff -f" in testvm.INIT


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio (Debian package cpio) missing")
def test_cpio_tool_lists_the_gzipped_archive(tree: list[fstree.Entry]) -> None:
    data = gzip.decompress(gzip_deterministic(initramfs.write_newc(tree)))
    listing = subprocess.run(
        ["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True
    ).stdout.decode()
    assert listing.split() == [entry.path for entry in fstree.normalized(tree)]


def test_file_tree_rejects_entries_without_parent_directory() -> None:
    with pytest.raises(ValueError, match="no parent"):
        initramfs.write_newc([fstree.file("missing/child", b"")])


def test_file_tree_rejects_duplicate_paths() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        initramfs.write_newc([fstree.directory("a"), fstree.directory("a")])
