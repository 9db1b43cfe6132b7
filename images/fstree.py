"""An in-memory file tree (directories, files, symlinks, device nodes) and its deterministic tar.

Both the initramfs (cpio) and the OCI layer (tar) are rendered from lists of :class:`Entry`,
always sorted by path, owned by root and dated at the epoch, so equal inputs give equal bytes.
"""

from __future__ import annotations

import io
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What an :class:`Entry` is."""

    DIR = "dir"
    FILE = "file"
    SYMLINK = "symlink"
    CHARDEV = "chardev"


_TYPE_BITS = {
    Kind.DIR: stat.S_IFDIR,
    Kind.FILE: stat.S_IFREG,
    Kind.SYMLINK: stat.S_IFLNK,
    Kind.CHARDEV: stat.S_IFCHR,
}


@dataclass(frozen=True)
class Entry:
    """A file tree node: ``path`` relative (no leading slash), ``mode`` the permission bits."""

    path: str
    kind: Kind
    mode: int
    data: bytes = b""
    target: str = ""
    rdev: tuple[int, int] = (0, 0)

    @property
    def st_mode(self) -> int:
        """Full ``st_mode``: file type bits plus permissions."""
        return _TYPE_BITS[self.kind] | self.mode


def directory(path: str, mode: int = 0o755) -> Entry:
    return Entry(path.strip("/"), Kind.DIR, mode)


def file(path: str, data: bytes, mode: int = 0o644) -> Entry:
    return Entry(path.strip("/"), Kind.FILE, mode, data=data)


def symlink(path: str, target: str) -> Entry:
    return Entry(path.strip("/"), Kind.SYMLINK, 0o777, target=target)


def chardev(path: str, major: int, minor: int, mode: int = 0o600) -> Entry:
    return Entry(path.strip("/"), Kind.CHARDEV, mode, rdev=(major, minor))


def normalized(entries: Iterable[Entry]) -> list[Entry]:
    """Entries sorted by path; rejects duplicates and entries whose parent directory is missing."""
    ordered = sorted(entries, key=lambda entry: entry.path)
    dirs = {entry.path for entry in ordered if entry.kind is Kind.DIR}
    seen: set[str] = set()
    for entry in ordered:
        if not entry.path or entry.path in seen:
            raise ValueError(f"empty or duplicate path in file tree: {entry.path!r}")
        seen.add(entry.path)
        parent = entry.path.rpartition("/")[0]
        if parent and parent not in dirs:
            raise ValueError(f"{entry.path!r} has no parent directory entry {parent!r}")
    return ordered


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    """Render entries as an uncompressed ustar archive: sorted, uid/gid 0, mtime 0."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for entry in normalized(entries):
            info = tarfile.TarInfo(entry.path)
            info.mode = entry.mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            payload = None
            if entry.kind is Kind.DIR:
                info.type = tarfile.DIRTYPE
            elif entry.kind is Kind.SYMLINK:
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
            elif entry.kind is Kind.CHARDEV:
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = entry.rdev
            else:
                info.size = len(entry.data)
                payload = io.BytesIO(entry.data)
            archive.addfile(info, payload)
    return buffer.getvalue()
