"""Volumes: the writable disks of VM apps, as qcow2 files in the app's work dir.

Per app (EVE's volumemgr, narrowed):

    <work_dir>/root.qcow2          overlay on the read-only, verified image blob
                                   (``qemu-img create -f qcow2 -F <fmt> -b <blob>``),
                                   as large as ``resources.disk_mib`` when that is larger
    <work_dir>/data-<name>.qcow2   blank thin data disks (``AppSpec.disks``)

The blob in the image store is never written: QEMU opens it read-only under the overlay.
An overlay whose backing file is not the app's current image (the image changed) is made
anew; a data disk asked to grow is grown (``qemu-img resize``), one asked to shrink is
refused (shrinking loses data; purge the app to recreate it).  A qcow2 image that names a
backing file of its own is refused: a downloaded header must not make QEMU open host files.

Purge recreates all writable disks (:func:`remove_all`, then the next start makes them
blank); a restart or an agent restart keeps them.  :func:`usage` is the bytes they take on
the host (allocated blocks), reported as the app's ``disk_used_bytes``.

Every file is written to a temporary name and renamed into place, so a crash never leaves
a half-made disk under its final name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node_agent.runtime.base import DiskAttachment, PermanentError, TemporaryError
from protocol.bounded_json import JsonRefused, load_json
from protocol.desired_state import DataDisk

__all__ = [
    "ROOT_DISK",
    "ImageInfo",
    "Volumes",
    "data_disk_path",
    "image_info",
    "remove_all",
    "usage",
    "wipe_app_state",
]

log = logging.getLogger(__name__)

MIB = 1024 * 1024
ROOT_DISK = "root.qcow2"
_DATA_PREFIX = "data-"
_SUFFIX = ".qcow2"
_BASE_FORMATS = ("qcow2", "raw")
_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ImageInfo:
    """What ``qemu-img info`` says about one file (its own layer only)."""

    format: str
    virtual_size: int
    backing: str = ""
    backing_format: str = ""


def _qemu_img(args: Sequence[str], what: str) -> str:
    tool = shutil.which("qemu-img")
    if tool is None:
        raise PermanentError("qemu-img is not installed (Debian: qemu-utils)")
    try:
        done = subprocess.run(
            [tool, *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TemporaryError(f"{what}: qemu-img timed out after {_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        raise TemporaryError(f"{what}: qemu-img {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def image_info(path: Path, fmt: str) -> ImageInfo:
    """Read ``path`` as format ``fmt`` (never probed: a raw file could pose as qcow2)."""
    out = _qemu_img(["info", "--output=json", "-U", "-f", fmt, str(path)], f"reading {path.name}")
    try:
        data = load_json(out, max_bytes=1024 * 1024)
        if not isinstance(data, dict):
            raise TypeError(f"a {type(data).__name__}, not an object")
        size = data.get("virtual-size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise TypeError(f"virtual-size {size!r} is not a byte count")
        return ImageInfo(
            format=str(data.get("format", "")),
            virtual_size=size,
            backing=str(data.get("full-backing-filename") or data.get("backing-filename") or ""),
            backing_format=str(data.get("backing-filename-format", "")),
        )
    except (JsonRefused, TypeError) as exc:
        raise TemporaryError(f"reading {path.name}: qemu-img info printed {exc}") from exc


def data_disk_path(work_dir: Path, name: str) -> Path:
    return Path(work_dir) / f"{_DATA_PREFIX}{name}{_SUFFIX}"


def _writable_disks(work_dir: Path) -> list[Path]:
    directory = Path(work_dir)
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file()
        and p.name.endswith(_SUFFIX)
        and (p.name == ROOT_DISK or p.name.startswith(_DATA_PREFIX))
    )


def usage(work_dir: Path) -> int:
    """Bytes the app's writable disks take on the host (allocated blocks, not sizes)."""
    total = 0
    for path in _writable_disks(work_dir):
        with contextlib.suppress(OSError):
            total += path.stat().st_blocks * 512
    return total


def wipe_app_state(work_dir: Path) -> None:
    """Delete the app's writable state: everything in its work dir but the console log (its
    root overlay and data disks too, so the next start makes them blank)."""
    if not work_dir.is_dir():
        return
    for entry in work_dir.iterdir():
        if entry.name == "console.log":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def remove_all(work_dir: Path) -> list[str]:
    """Delete the app's root overlay and data disks (purge, app removed); their names."""
    removed = []
    for path in _writable_disks(work_dir):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


def _create(target: Path, args: list[str], what: str) -> None:
    """``qemu-img create`` into a temporary file, then rename it to ``target`` (mode 0600)."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        _qemu_img(["create", "-q", *args[:-1], str(tmp), *args[-1:]], what)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class Volumes:
    """Makes and checks the writable disks of one node's VM apps (see the module doc)."""

    def root_overlay(
        self, app_uuid: str, work_dir: Path, base: Path, base_format: str, disk_mib: int = 0
    ) -> DiskAttachment:
        """The app's overlay on ``base``, made when missing or on another image."""
        if base_format not in _BASE_FORMATS:
            raise PermanentError(f"app {app_uuid}: cannot layer a disk over a {base_format} image")
        base = Path(base).absolute()
        base_info = image_info(base, base_format)
        if base_info.backing:
            raise PermanentError(
                f"app {app_uuid}: image {base.name} names a backing file of its own "
                f"({base_info.backing!r}); only self-contained images are booted"
            )
        path = Path(work_dir) / ROOT_DISK
        wanted = max(base_info.virtual_size, disk_mib * MIB)
        current = image_info(path, "qcow2") if path.is_file() else None
        if current is not None and (
            current.backing != str(base) or current.backing_format != base_format
        ):
            log.info("app %s: image changed, making a new root disk", app_uuid)
            current = None
        if current is None:
            _create(
                path,
                ["-f", "qcow2", "-F", base_format, "-b", str(base), str(wanted)],
                f"app {app_uuid}: creating its root disk",
            )
            log.info(
                "app %s: root disk %s over %s (%d MiB)", app_uuid, path, base.name, wanted // MIB
            )
        elif current.virtual_size < wanted:
            self._grow(app_uuid, path, wanted)
        return DiskAttachment(path=path, format="qcow2", backing=base, backing_format=base_format)

    def data_disk(self, app_uuid: str, work_dir: Path, disk: DataDisk) -> DiskAttachment:
        """The blank data disk ``disk``, made when missing, grown when asked to."""
        path = data_disk_path(work_dir, disk.name)
        wanted = disk.size_mib * MIB
        if not path.is_file():
            _create(
                path, ["-f", "qcow2", str(wanted)], f"app {app_uuid}: creating disk {disk.name}"
            )
            log.info("app %s: data disk %s (%d MiB)", app_uuid, disk.name, disk.size_mib)
        else:
            info = image_info(path, "qcow2")
            if info.backing:
                raise PermanentError(f"app {app_uuid}: data disk {disk.name} has a backing file")
            if info.virtual_size > wanted:
                raise PermanentError(
                    f"app {app_uuid}: data disk {disk.name} is {info.virtual_size // MIB} MiB; "
                    f"shrinking it to {disk.size_mib} MiB would lose data (purge to recreate)"
                )
            if info.virtual_size < wanted:
                self._grow(app_uuid, path, wanted)
        return DiskAttachment(path=path, format="qcow2", name=disk.name)

    def prepare(
        self,
        app_uuid: str,
        work_dir: Path,
        base: Path | None,
        base_format: str,
        disk_mib: int,
        disks: Sequence[DataDisk],
    ) -> tuple[DiskAttachment | None, tuple[DiskAttachment, ...]]:
        """Root overlay (when ``base`` is a disk image) and data disks; stale data disks of
        names no longer asked for are deleted."""
        root = (
            self.root_overlay(app_uuid, work_dir, base, base_format, disk_mib)
            if base is not None
            else None
        )
        data = tuple(self.data_disk(app_uuid, work_dir, d) for d in disks)
        keep = {a.path.name for a in data} | {ROOT_DISK}
        for path in _writable_disks(work_dir):
            if path.name not in keep:
                log.info("app %s: deleting data disk %s (no longer asked for)", app_uuid, path.name)
                path.unlink(missing_ok=True)
        return root, data

    @staticmethod
    def _grow(app_uuid: str, path: Path, size: int) -> None:
        _qemu_img(
            ["resize", "-q", "-f", "qcow2", str(path), str(size)],
            f"app {app_uuid}: growing {path.name}",
        )
        log.info("app %s: grew %s to %d MiB", app_uuid, path.name, size // MIB)
