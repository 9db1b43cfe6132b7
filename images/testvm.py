"""Recipe of ``testvm``: a Debian cloud kernel plus a busybox initramfs that announces itself.

The guest's /init mounts proc/sys/devtmpfs, installs the busybox applets, prints
:data:`MARKER` and one :data:`PCI_MARKER` line per PCI function it sees (``address
vendor:device class``: how a test learns from the guest itself that a passed-through device
arrived) on the console, then powers off at once when the kernel command line has
:data:`POWEROFF_ARG`; otherwise it loads the ACPI button + evdev modules, runs busybox ``acpid``
(the power button powers the guest off), keeps an interactive shell on the serial line
(``ttyS0``: what a remote console reaches) and prints a heartbeat every 30 s forever.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from images import debian, fstree, initramfs, kernel_bundle
from images.busybox import Busybox
from images.common import ImageBuildError, gzip_deterministic

log = logging.getLogger(__name__)

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
KERNEL_PACKAGE_PREFIX = "linux-image-6.1.0-"
CMDLINE = "console=ttyS0 panic=-1 quiet"
MARKER = "OUTPOST-TESTVM-UP"
HEARTBEAT = "OUTPOST-TESTVM-HEARTBEAT"
PCI_MARKER = "OUTPOST-TESTVM-PCI"
POWEROFF_ARG = "outpost.poweroff"
MODULES = ("drivers/acpi/button.ko", "drivers/input/evdev.ko")
SOURCES = (
    "testvm.py",
    "initramfs.py",
    "kernel_bundle.py",
    "fstree.py",
    "debian.py",
    "busybox.py",
    "common.py",
)

INIT = f"""#!/bin/sh
# Outpost test VM init: announce, then power off or idle with a heartbeat.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
exec </dev/console >/dev/console 2>&1
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
hostname outpost-testvm
echo "{MARKER}"
for d in /sys/bus/pci/devices/*; do
    [ -e "$d/vendor" ] || continue
    v=$(cat $d/vendor); p=$(cat $d/device); c=$(cat $d/class)
    echo "{PCI_MARKER} ${{d##*/}} ${{v#0x}}:${{p#0x}} class=${{c#0x}}"
done
case " $(cat /proc/cmdline) " in
*" {POWEROFF_ARG} "*)
    echo "outpost-testvm: {POWEROFF_ARG} given, powering off"
    poweroff -f
    ;;
esac
for module in /lib/modules/outpost/*.ko; do insmod "$module" 2>/dev/null; done
mkdir -p /var/run
acpid -f -l /dev/null &
# a shell on the serial line for remote consoles (respawned when it exits)
(while :; do setsid -c sh -i </dev/ttyS0 >/dev/ttyS0 2>&1; done) &
echo "outpost-testvm: idle, the ACPI power button powers off"
beat=0
while :; do
    sleep 30
    beat=$((beat + 1))
    echo "{HEARTBEAT} $beat uptime=$(cut -d' ' -f1 /proc/uptime)"
done
"""

POWER_BUTTON = """#!/bin/sh
echo "outpost-testvm: power button pressed, powering off" >/dev/console
poweroff -f
"""


@dataclass(frozen=True)
class KernelFiles:
    """What the testvm takes from the kernel package: the bzImage and a few modules."""

    version: str
    vmlinuz: bytes
    modules: dict[str, bytes]


def kernel_package(cache_dir: Path) -> debian.DebPackage:
    """The newest cloud kernel package, as linux-image-cloud-amd64 depends on it."""
    return debian.resolve_dependency(KERNEL_META_PACKAGE, KERNEL_PACKAGE_PREFIX, cache_dir)


def kernel_files(
    package: debian.DebPackage, cache_dir: Path, extra_modules: Sequence[str] = ()
) -> KernelFiles:
    """Download (cached) the kernel .deb and take out vmlinuz, :data:`MODULES` and
    ``extra_modules`` (paths below ``kernel/``, as in :data:`MODULES`)."""
    deb = debian.download(package, cache_dir)
    wanted = [*MODULES, *extra_modules]
    patterns = ["boot/vmlinuz-*", *(f"lib/modules/*/kernel/{m}*" for m in wanted)]
    files = debian.extract(deb, patterns)
    kernels = [name for name in files if name.startswith("boot/vmlinuz-")]
    if len(kernels) != 1:
        raise ImageBuildError(f"{deb.name}: expected one boot/vmlinuz-*, found {kernels}")
    version = kernels[0].removeprefix("boot/vmlinuz-")
    modules = {}
    for module in wanted:
        path = f"lib/modules/{version}/kernel/{module}"
        if path not in files:
            raise ImageBuildError(f"{deb.name}: module {path} not found")
        modules[Path(module).name] = files[path]
    return KernelFiles(version, files[kernels[0]], modules)


def initramfs_tree(busybox: bytes, modules: dict[str, bytes]) -> list[fstree.Entry]:
    """The initramfs: busybox, /init, the power-button handler and the modules /init loads."""
    dirs = ["bin", "dev", "etc", "etc/acpi", "etc/acpi/PWRF", "lib", "lib/modules"]
    dirs += ["lib/modules/outpost", "proc", "run", "sbin", "sys", "usr", "usr/bin", "usr/sbin"]
    dirs += ["var", "var/log"]
    entries = [fstree.directory(name) for name in dirs]
    entries += [
        fstree.directory("root", 0o700),
        fstree.directory("tmp", 0o1777),
        fstree.chardev("dev/console", 5, 1),
        fstree.file("bin/busybox", busybox, 0o755),
        fstree.symlink("bin/sh", "busybox"),
        fstree.file("init", INIT.encode(), 0o755),
        fstree.file("etc/acpi/PWRF/00000080", POWER_BUTTON.encode(), 0o755),
    ]
    entries += [fstree.file(f"lib/modules/outpost/{n}", d) for n, d in sorted(modules.items())]
    return entries


def build(kernel: KernelFiles, busybox: Busybox) -> bytes:
    """The testvm kernel-bundle tar."""
    if not re.fullmatch(r"[\w.+-]+", kernel.version):
        raise ImageBuildError(f"unexpected kernel version {kernel.version!r}")
    initrd = gzip_deterministic(initramfs.write_newc(initramfs_tree(busybox.data, kernel.modules)))
    log.info("testvm: kernel %s, initrd %d KiB", kernel.version, len(initrd) // 1024)
    bundle = kernel_bundle.KernelBundle(kernel=kernel.vmlinuz, initrd=initrd, cmdline=CMDLINE)
    return kernel_bundle.pack(bundle)
