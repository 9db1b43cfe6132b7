"""The "kernel-bundle" format: an uncompressed tar of exactly ``kernel``, ``initrd``, ``cmdline``.

``kernel`` is a bzImage, ``initrd`` a gzip'd newc cpio and ``cmdline`` the kernel command line
(UTF-8 text, one line). Runtimes boot it with ``-kernel``/``-initrd``/``-append`` (or libvirt's
``<kernel>``/``<initrd>``/``<cmdline>``).
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from images import fstree

FORMAT = "kernel-bundle"
MEMBERS = ("cmdline", "initrd", "kernel")


@dataclass(frozen=True)
class KernelBundle:
    """The three parts of a kernel-bundle."""

    kernel: bytes
    initrd: bytes
    cmdline: str


def pack(bundle: KernelBundle) -> bytes:
    """Serialize a bundle as a deterministic tar (members sorted, root-owned, mtime 0)."""
    return fstree.tar_bytes(
        [
            fstree.file("kernel", bundle.kernel),
            fstree.file("initrd", bundle.initrd),
            fstree.file("cmdline", bundle.cmdline.strip().encode("utf-8") + b"\n"),
        ]
    )


def read(path: Path) -> KernelBundle:
    """Load a kernel-bundle tar; raises ValueError if the members are not exactly the three."""
    with tarfile.open(path, mode="r:") as archive:
        members = {member.name: member for member in archive.getmembers()}
        if sorted(members) != sorted(MEMBERS) or not all(m.isfile() for m in members.values()):
            raise ValueError(f"{path}: not a kernel-bundle (members: {sorted(members)})")
        parts = {}
        for name, member in members.items():
            data = archive.extractfile(member)
            if data is None:
                raise ValueError(f"{path}: member {name} is not a regular file")
            parts[name] = data.read()
    return KernelBundle(parts["kernel"], parts["initrd"], parts["cmdline"].decode("utf-8").strip())


def unpack(path: Path, directory: Path) -> dict[str, Path]:
    """Write a bundle's parts as files ``kernel``, ``initrd``, ``cmdline`` into ``directory``."""
    bundle = read(path)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in MEMBERS}
    paths["kernel"].write_bytes(bundle.kernel)
    paths["initrd"].write_bytes(bundle.initrd)
    paths["cmdline"].write_text(bundle.cmdline + "\n")
    return paths
