"""Recipe of ``busybox``: an OCI image of busybox-static with a symlink per applet in /bin."""

from __future__ import annotations

from images import fstree, oci
from images.busybox import Busybox

REF_NAME = "outpost/busybox:1"
SOURCES = ("container.py", "oci.py", "fstree.py", "busybox.py", "common.py")
CONFIG = oci.ImageConfig(cmd=("/bin/sh",))

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def rootfs_tree(busybox: bytes, applets: list[str]) -> list[fstree.Entry]:
    """The single layer: /bin/busybox, /bin/<applet> symlinks, minimal /etc and empty dirs."""
    entries = [fstree.directory(name) for name in ("bin", "dev", "etc", "proc", "sys", "var")]
    entries += [fstree.directory("root", 0o700), fstree.directory("tmp", 0o1777)]
    entries += [
        fstree.file("bin/busybox", busybox, 0o755),
        fstree.file("etc/passwd", PASSWD.encode()),
        fstree.file("etc/group", GROUP.encode()),
    ]
    entries += [fstree.symlink(f"bin/{name}", "busybox") for name in applets if "/" not in name]
    return entries


def build(busybox: Busybox) -> bytes:
    """The busybox oci-archive tar."""
    layer = fstree.tar_bytes(rootfs_tree(busybox.data, busybox.applets()))
    return oci.build_oci_archive(
        layer, CONFIG, REF_NAME, created_by=f"busybox-static {busybox.version}"
    )
