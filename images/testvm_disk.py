"""Recipe of ``testvm-disk``: the test VM as a tiny BIOS-bootable disk, raw and qcow2.

Same kernel and busybox as :mod:`images.testvm`, plus the virtio block modules. Layout (MBR):

- partition 1: FAT16 with SYSLINUX, ``vmlinuz``, ``initrd.img`` (the initramfs is the root);
- partition 2: :data:`STATE_MIB` MiB of raw "state" sectors: a boot counter the guest keeps.

Its /init loads virtio_blk, reads the counter from ``/dev/vda2``, adds one, writes it back
and prints :data:`BOOT_MARKER` ``n`` (1 on a fresh disk: a purged overlay starts again at 1,
a restarted VM counts on), then one :data:`DISK_MARKER` line per virtio disk (name, size in
512-byte sectors, serial), then :data:`testvm.MARKER`, and idles like testvm (heartbeat,
the ACPI power button powers off).

Deterministic: fixed FAT volume id, ``--invariant`` and ``SOURCE_DATE_EPOCH`` for mtools
(which SYSLINUX's installer uses); the qcow2 is an uncompressed ``qemu-img convert`` of the
raw disk. Registered in :func:`images.build.build_all` as ``testvm-disk`` (qcow2) and
``testvm-disk-raw`` (raw).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from images import busybox, debian, disk, fstree, initramfs, testvm
from images.common import ImageBuildError, gzip_deterministic

__all__ = [
    "BOOT_MARKER",
    "DISK_MARKER",
    "FILE_QCOW2",
    "FILE_RAW",
    "NAME_QCOW2",
    "NAME_RAW",
    "SOURCES",
    "build_qcow2",
    "build_raw",
    "kernel_files",
]

NAME_QCOW2 = "testvm-disk"
FILE_QCOW2 = "testvm-disk.qcow2"
NAME_RAW = "testvm-disk-raw"
FILE_RAW = "testvm-disk.raw"
BOOT_MARKER = "OUTPOST-TESTVM-DISK-BOOT"
DISK_MARKER = "OUTPOST-TESTVM-DISK"
BOOT_MIB = 24  # mkfs.fat is given it in KiB below
STATE_MIB = 1
SOURCES = ("testvm_disk.py", "disk.py", *testvm.SOURCES)
DISK_MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
)
_EPOCH = "315532800"  # 1980-01-01, FAT's first representable day
_VOLUME_ID = "4f505354"

INIT = f"""#!/bin/sh
# Outpost disk test VM init: count boots on the root disk, list disks, idle.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
exec </dev/console >/dev/console 2>&1
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
hostname outpost-testvm-disk
for name in {" ".join(Path(m).stem for m in DISK_MODULES)} button evdev; do
    insmod "/lib/modules/outpost/$name.ko" 2>/dev/null
done
i=0
while [ ! -b /dev/vda2 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
n=$(dd if=/dev/vda2 bs=16 count=1 2>/dev/null | tr -dc 0-9)
n=$(( ${{n:-0}} + 1 ))
printf '%-15s\\n' "$n" | dd of=/dev/vda2 bs=16 count=1 conv=notrunc,fsync 2>/dev/null
echo "{BOOT_MARKER} $n"
for d in /sys/block/vd*; do
    echo "{DISK_MARKER} $(basename $d) sectors=$(cat $d/size) serial=$(cat $d/serial 2>/dev/null)"
done
echo "{testvm.MARKER}"
mkdir -p /var/run
acpid -f -l /dev/null &
beat=0
while :; do
    sleep 30
    beat=$((beat + 1))
    echo "{testvm.HEARTBEAT} $beat uptime=$(cut -d' ' -f1 /proc/uptime)"
done
"""


def kernel_files(package: debian.DebPackage, cache_dir: Path) -> testvm.KernelFiles:
    """testvm's kernel files plus :data:`DISK_MODULES`."""
    return testvm.kernel_files(package, cache_dir, DISK_MODULES)


def _initrd(box: bytes, modules: dict[str, bytes]) -> bytes:
    entries = [e for e in testvm.initramfs_tree(box, modules) if e.path != "init"]
    entries.append(fstree.file("init", INIT.encode(), 0o755))
    return gzip_deterministic(initramfs.write_newc(entries))


def _run(args: list[str], what: str, stdin: str | None = None) -> None:
    tool = shutil.which(args[0]) or shutil.which(args[0], path="/usr/sbin:/sbin")
    if tool is None:
        raise ImageBuildError(f"{args[0]} not found: `apt-get install {disk.TOOLS.get(args[0])}`")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "SOURCE_DATE_EPOCH": _EPOCH, "TZ": "UTC"}
    done = subprocess.run(
        [tool, *args[1:]], input=stdin, capture_output=True, text=True, timeout=300, env=env
    )
    if done.returncode != 0:
        raise ImageBuildError(f"{what}: {args[0]} failed: {(done.stderr or done.stdout).strip()}")


def _boot_fat(work: Path, kernel: bytes, initrd: bytes) -> Path:
    fat = work / "boot.fat"
    _run(
        ["mkfs.fat", "--invariant", "-i", _VOLUME_ID, "-n", "OUTPOSTBOOT", "-C", str(fat), "24576"],
        "mkfs.fat",
    )
    cfg = (
        "SERIAL 0 115200\nDEFAULT outpost\nPROMPT 0\nTIMEOUT 0\n"
        f"LABEL outpost\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND {testvm.CMDLINE}\n"
    )
    for name, data in (("vmlinuz", kernel), ("initrd.img", initrd), ("syslinux.cfg", cfg.encode())):
        source = work / name
        source.write_bytes(data)
        os.utime(source, (int(_EPOCH), int(_EPOCH)))
        _run(["mcopy", "-m", "-o", "-i", str(fat), str(source), f"::{name}"], f"mcopy {name}")
    _run(["syslinux", "--install", str(fat)], "syslinux --install")
    return fat


def build_raw(kernel: testvm.KernelFiles, box: busybox.Busybox) -> bytes:
    """The raw disk image (deterministic)."""
    initrd = _initrd(box.data, kernel.modules)
    with tempfile.TemporaryDirectory(prefix="outpost-testvm-disk-") as tmp:
        work = Path(tmp)
        fat = _boot_fat(work, kernel.vmlinuz, initrd)
        image = work / "disk.raw"
        start1, start2 = 1, 1 + BOOT_MIB
        with image.open("wb") as handle:
            handle.truncate((start2 + STATE_MIB) * disk.MIB)
        table = (
            "label: dos\nlabel-id: 0x4f505354\n"
            f"start={start1 * 2048}, size={BOOT_MIB * 2048}, type=6, bootable\n"
            f"start={start2 * 2048}, size={STATE_MIB * 2048}, type=da\n"
        )
        _run(["sfdisk", "--quiet", "--no-reread", str(image)], "sfdisk", stdin=table)
        with image.open("r+b") as handle:
            handle.write(disk.MBR_BIN.read_bytes()[:440])
            handle.seek(start1 * disk.MIB)
            handle.write(fat.read_bytes())
        return image.read_bytes()


def build_qcow2(kernel: testvm.KernelFiles, box: busybox.Busybox) -> bytes:
    """The same disk as qcow2 (uncompressed, deterministic)."""
    raw = build_raw(kernel, box)
    with tempfile.TemporaryDirectory(prefix="outpost-testvm-disk-") as tmp:
        source, target = Path(tmp) / "disk.raw", Path(tmp) / "disk.qcow2"
        source.write_bytes(raw)
        _run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(source), str(target)], "convert"
        )
        return target.read_bytes()
