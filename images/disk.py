"""A BIOS-bootable disk from a root directory, built without loop devices or mounts.

Layout (MBR): partition 1, FAT16 ``/boot`` with the kernel, the initrd and SYSLINUX (installed
by the mtools-based ``syslinux --install``, which works on an image file); partition 2, ext4
made from the root directory by ``mkfs.ext4 -d``. SYSLINUX's ``mbr.bin`` chains to partition
1. Also small FAT images (``fat_image``) for config disks. Tools: ``mkfs.fat``, ``mcopy``
(dosfstools, mtools), ``syslinux`` (syslinux, syslinux-common), ``sfdisk`` (fdisk),
``mkfs.ext4`` (e2fsprogs), ``qemu-img`` (qemu-utils).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from images.common import ImageBuildError

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
TOOLS = {
    "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
    "sfdisk": "fdisk",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
}


@dataclass(frozen=True)
class BootFiles:
    """What SYSLINUX boots: the kernel, its initrd and the kernel command line."""

    kernel: Path
    initrd: Path
    cmdline: str


def run(args: list[str], what: str, timeout: float = 900, stdin: str | None = None) -> str:
    """Run a tool; a missing tool or a failure raises ImageBuildError naming the package."""
    tool = shutil.which(args[0]) or shutil.which(args[0], path="/usr/sbin:/sbin")
    if tool is None:
        package = TOOLS.get(args[0], args[0])
        raise ImageBuildError(f"{args[0]} not found: `apt-get install {package}`")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    try:
        done = subprocess.run(
            [tool, *args[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"{what}: timed out after {timeout} s") from exc
    if done.returncode != 0:
        raise ImageBuildError(f"{what}: {args[0]} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def fat_image(path: Path, files: dict[str, bytes | Path], label: str, size_mib: int) -> Path:
    """A FAT image of ``size_mib`` labelled ``label`` holding ``files`` (name → data/path)."""
    path.unlink(missing_ok=True)
    run(
        ["mkfs.fat", "-C", "-n", label, str(path), str(size_mib * 1024)],
        f"mkfs.fat {path}",
    )
    for name, content in files.items():
        source = content if isinstance(content, Path) else path.with_name(f".{name}.tmp")
        if not isinstance(content, Path):
            source.write_bytes(content)
        try:
            run(["mcopy", "-o", "-i", str(path), str(source), f"::{name}"], f"mcopy {name}")
        finally:
            if not isinstance(content, Path):
                source.unlink(missing_ok=True)
    return path


def _syslinux_cfg(boot: BootFiles) -> bytes:
    return (
        "DEFAULT outpost\nPROMPT 0\nTIMEOUT 0\nSERIAL 0 115200\n"
        f"LABEL outpost\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND {boot.cmdline}\n"
    ).encode()


def _copy_into(target: Path, source: Path, offset: int) -> None:
    """Write ``source`` into ``target`` at ``offset``, skipping zero blocks (sparse)."""
    block = 4 * MIB
    with source.open("rb") as src, target.open("r+b") as dst:
        position = offset
        while chunk := src.read(block):
            if chunk.count(0) != len(chunk):
                dst.seek(position)
                dst.write(chunk)
            position += len(chunk)


def bootable_disk(
    root: Path, boot: BootFiles, out: Path, work: Path, free_mib: int = 256, boot_mib: int = 64
) -> Path:
    """Raw disk image ``out``: MBR + FAT /boot (SYSLINUX) + ext4 root from ``root``."""
    work.mkdir(parents=True, exist_ok=True)
    boot_img = fat_image(
        work / "boot.fat",
        {
            "vmlinuz": boot.kernel,
            "initrd.img": boot.initrd,
            "syslinux.cfg": _syslinux_cfg(boot),
        },
        "OUTPOSTBOOT",
        boot_mib,
    )
    run(["syslinux", "--install", str(boot_img)], "syslinux --install")
    used = int(run(["du", "-s", "--block-size=1M", str(root)], "du").split()[0])
    root_mib = int(used * 1.15) + free_mib
    root_img = work / "root.ext4"
    root_img.unlink(missing_ok=True)
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "outpost-root",
            "-d",
            str(root),
            "-E",
            "root_owner=0:0",
            str(root_img),
            f"{root_mib}M",
        ],
        "mkfs.ext4 -d",
    )
    start1, start2 = 1, 1 + boot_mib
    total = start2 + root_mib
    tmp = out.with_name(out.name + ".part")
    tmp.unlink(missing_ok=True)
    with tmp.open("wb") as handle:
        handle.truncate(total * MIB)
    table = (
        "label: dos\n"
        f"start={start1 * 2048}, size={boot_mib * 2048}, type=6, bootable\n"
        f"start={start2 * 2048}, size={root_mib * 2048}, type=83\n"
    )
    run(["sfdisk", "--quiet", "--no-reread", str(tmp)], "sfdisk", stdin=table)
    with tmp.open("r+b") as handle:
        handle.write(MBR_BIN.read_bytes()[:440])
    _copy_into(tmp, boot_img, start1 * MIB)
    _copy_into(tmp, root_img, start2 * MIB)
    tmp.replace(out)
    log.info("disk %s: /boot %d MiB, root %d MiB (%d MiB used)", out, boot_mib, root_mib, used)
    return out


def to_qcow2(raw: Path, out: Path, compress: bool = True) -> Path:
    """Convert a raw disk to qcow2 (zstd-compressed clusters when ``compress``)."""
    tmp = out.with_name(out.name + ".part")
    args = ["qemu-img", "convert", "-O", "qcow2"]
    if compress:
        args += ["-c", "-o", "compression_type=zstd"]
    run([*args, str(raw), str(tmp)], f"qemu-img convert {raw}")
    tmp.replace(out)
    return out
