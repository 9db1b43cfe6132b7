"""Deterministic writer (and a small reader) for the "newc" cpio format the kernel unpacks.

Pure Python, no ``cpio`` tool needed: entries are sorted, owned by root, dated at the epoch and
numbered sequentially, so the same tree always gives the same bytes.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable

from images.fstree import Entry, Kind, normalized

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_HEADER_LEN = 110


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _record(
    ino: int, mode: int, nlink: int, name: str, data: bytes, rdev: tuple[int, int]
) -> bytes:
    encoded = name.encode("utf-8") + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = MAGIC + b"".join(b"%08X" % value for value in fields)
    return header + encoded + _pad4(_HEADER_LEN + len(encoded)) + data + _pad4(len(data))


def write_newc(entries: Iterable[Entry]) -> bytes:
    """Render entries as an uncompressed newc cpio archive (with the trailer)."""
    chunks = []
    for ino, entry in enumerate(normalized(entries), start=1):
        data = entry.target.encode("utf-8") if entry.kind is Kind.SYMLINK else entry.data
        nlink = 2 if entry.kind is Kind.DIR else 1
        chunks.append(_record(ino, entry.st_mode, nlink, entry.path, data, entry.rdev))
    chunks.append(_record(0, 0, 1, TRAILER, b"", (0, 0)))
    return b"".join(chunks)


def read_newc(archive: bytes) -> list[Entry]:
    """Parse a newc cpio archive back into entries (stops at the trailer)."""
    entries: list[Entry] = []
    offset = 0
    while True:
        header = archive[offset : offset + _HEADER_LEN]
        if len(header) < _HEADER_LEN or header[:6] != MAGIC:
            raise ValueError(f"bad newc header at offset {offset}")
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name_start = offset + _HEADER_LEN
        name = archive[name_start : name_start + namesize - 1].decode("utf-8")
        data_start = name_start + namesize + len(_pad4(_HEADER_LEN + namesize))
        data = archive[data_start : data_start + size]
        offset = data_start + size + len(_pad4(size))
        if name == TRAILER:
            return entries
        entries.append(_entry_from(name, mode, data, rdev))


def _entry_from(name: str, mode: int, data: bytes, rdev: tuple[int, int]) -> Entry:
    perms = stat.S_IMODE(mode)
    if stat.S_ISDIR(mode):
        return Entry(name, Kind.DIR, perms)
    if stat.S_ISLNK(mode):
        return Entry(name, Kind.SYMLINK, perms, target=data.decode("utf-8"))
    if stat.S_ISCHR(mode):
        return Entry(name, Kind.CHARDEV, perms, rdev=rdev)
    return Entry(name, Kind.FILE, perms, data=data)
