"""Checks that a verified blob is what its declared format says, before it is ever used.

* ``raw``: any bytes.
* ``qcow2``: the qcow2 magic, ``qemu-img info`` agrees it is qcow2, and it names no backing
  file and no external data file: a downloaded image must not make QEMU open host paths.
* ``kernel-bundle``: an uncompressed tar of regular files ``kernel`` (required), ``initrd``
  and ``cmdline`` (optionally ``./``-prefixed), each at most once.
* ``oci-archive``: a tar holding ``oci-layout`` and ``index.json``.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from protocol.bounded_json import JsonRefused, load_json

__all__ = ["FormatError", "check_format"]

QCOW2_MAGIC = b"QFI\xfb"
KERNEL_BUNDLE_MEMBERS = ("kernel", "initrd", "cmdline")
OCI_REQUIRED = ("oci-layout", "index.json")
_QEMU_IMG_TIMEOUT_S = 60


class FormatError(Exception):
    """The blob is not a valid image of its declared format."""


def check_format(path: Path, fmt: str) -> None:
    """Raise :class:`FormatError` unless ``path`` is a valid ``fmt`` image."""
    checks = {
        "raw": lambda p: None,
        "qcow2": _check_qcow2,
        "kernel-bundle": _check_kernel_bundle,
        "oci-archive": _check_oci_archive,
    }
    try:
        check = checks[fmt]
    except KeyError:
        raise FormatError(f"unknown image format {fmt!r}") from None
    check(path)


def _check_qcow2(path: Path) -> None:
    with path.open("rb") as fh:
        if fh.read(4) != QCOW2_MAGIC:
            raise FormatError("declared qcow2 but the file has no qcow2 magic")
    try:
        done = subprocess.run(
            ["qemu-img", "info", "--output=json", "-f", "qcow2", "--force-share", str(path)],
            capture_output=True,
            text=True,
            timeout=_QEMU_IMG_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FormatError(f"qemu-img info failed: {exc}") from exc
    if done.returncode != 0:
        raise FormatError(f"qemu-img info refused the qcow2 image: {done.stderr.strip()[:300]}")
    try:
        info = load_json(done.stdout, max_bytes=1024 * 1024)
    except JsonRefused as exc:
        raise FormatError(f"qemu-img info gave unreadable output: {exc}") from exc
    if not isinstance(info, dict):
        raise FormatError(f"qemu-img info printed a {type(info).__name__}, not an object")
    if info.get("format") != "qcow2":
        raise FormatError(f"declared qcow2 but qemu-img reads {info.get('format')!r}")
    backing = info.get("backing-filename") or info.get("full-backing-filename")
    if backing:
        raise FormatError(f"a downloaded qcow2 image must not have a backing file ({backing!r})")
    data_file = (info.get("format-specific") or {}).get("data", {}).get("data-file")
    if data_file:
        raise FormatError(f"a downloaded qcow2 image must not name a data file ({data_file!r})")


def _tar_members(path: Path, fmt: str) -> list[tarfile.TarInfo]:
    try:
        with tarfile.open(path, mode="r:") as archive:
            return archive.getmembers()
    except (tarfile.TarError, EOFError) as exc:
        raise FormatError(
            f"declared {fmt} but it is not a readable uncompressed tar: {exc}"
        ) from exc


def _check_kernel_bundle(path: Path) -> None:
    seen: set[str] = set()
    for member in _tar_members(path, "kernel-bundle"):
        name = member.name.removeprefix("./")
        if name in ("", "."):
            continue
        if name not in KERNEL_BUNDLE_MEMBERS or not member.isreg():
            raise FormatError(
                f"kernel-bundle member {member.name!r} is not one of the regular files "
                f"{', '.join(KERNEL_BUNDLE_MEMBERS)}"
            )
        if name in seen:
            raise FormatError(f"kernel-bundle member {name!r} appears twice")
        seen.add(name)
    if "kernel" not in seen:
        raise FormatError("kernel-bundle has no 'kernel' member")


def _check_oci_archive(path: Path) -> None:
    names = {m.name.removeprefix("./") for m in _tar_members(path, "oci-archive") if m.isreg()}
    missing = [name for name in OCI_REQUIRED if name not in names]
    if missing:
        raise FormatError(f"oci-archive lacks {', '.join(missing)} (not an OCI image layout)")
