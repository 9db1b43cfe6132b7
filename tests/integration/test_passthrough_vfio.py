"""Real IOMMU groups and a real vfio-pci binding, in a QEMU guest with an emulated IOMMU.

This host has no IOMMU groups and no vfio, so the test boots (TCG) the testvm's Debian
cloud kernel with ``-device intel-iommu -device edu`` and an initramfs carrying the vfio
modules.  The guest prints its PCI sysfs as the kernel lays it out (files and the exact
link targets); the test rebuilds that tree on the host, and the agent's inventory and
passthrough check run on it: the ``edu`` device (1234:11e8) must resolve to its own
group.  The guest then binds that device to vfio-pci the way libvirt's ``managed='yes'``
does (driver_override, unbind, drivers_probe) and shows ``/dev/vfio/<group>``.

What this does not cover: a ``<hostdev>`` into a VM nested in that guest (the guest has no
libvirt; the XML is covered by tests/unit/test_passthrough_xml.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from images import busybox as busybox_image
from images import debian, fstree, initramfs, testvm
from images.common import gzip_deterministic
from node_agent.passthrough import resolve_adapters
from node_agent.pci_inventory import read_pci_inventory
from protocol.desired_state import Adapter
from tests.fixtures.images import IMAGES_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VFIO_MODULES = (
    "virt/lib/irqbypass.ko",
    "drivers/vfio/vfio.ko",
    "drivers/vfio/vfio_iommu_type1.ko",
    "drivers/vfio/vfio_virqfd.ko",
    "drivers/vfio/pci/vfio-pci-core.ko",
    "drivers/vfio/pci/vfio-pci.ko",
)
EDU = "1234:11e8"

INIT = r"""#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
exec </dev/console >/dev/console 2>&1
for m in irqbypass vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci; do
    insmod /lib/modules/outpost/$m.ko || echo "VFIO-TEST insmod $m failed"
done
sysfs() {
    for d in /sys/bus/pci/devices/*; do
        echo "DEV ${d##*/} $(readlink $d) $(cat $d/class) $(cat $d/vendor) $(cat $d/device)" \
             "driver=$(readlink $d/driver) group=$(readlink $d/iommu_group)"
    done
    for m in /sys/kernel/iommu_groups/*/devices/*; do
        g=${m%/devices/*}
        echo "GRP ${g##*/} ${m##*/} $(readlink $m)"
    done
}
echo VFIO-TEST-BEFORE
sysfs
edu=""
for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor):$(cat $d/device)" = "0x1234:0x11e8" ] && edu=${d##*/}
done
echo vfio-pci > /sys/bus/pci/devices/$edu/driver_override
[ -e /sys/bus/pci/devices/$edu/driver ] && echo $edu > /sys/bus/pci/devices/$edu/driver/unbind
echo $edu > /sys/bus/pci/drivers_probe
echo VFIO-TEST-AFTER
sysfs
echo "VFIO-NODES $(ls /dev/vfio | tr '\n' ' ')"
echo VFIO-TEST-DONE
poweroff -f
"""


def _initrd(cache: Path, version: str, modules: dict[str, bytes]) -> bytes:
    box = busybox_image.locate(cache)
    dirs = ["bin", "dev", "lib", "lib/modules", "lib/modules/outpost", "proc", "sys", "sbin"]
    dirs += ["usr", "usr/bin", "usr/sbin", "tmp"]
    entries = [fstree.directory(d) for d in dirs]
    entries += [
        fstree.chardev("dev/console", 5, 1),
        fstree.file("bin/busybox", box.data, 0o755),
        fstree.symlink("bin/sh", "busybox"),
        fstree.file("init", INIT.encode(), 0o755),
    ]
    entries += [fstree.file(f"lib/modules/outpost/{n}", d) for n, d in sorted(modules.items())]
    return gzip_deterministic(initramfs.write_newc(entries))


@pytest.fixture(scope="module")
def guest_console(built_images) -> str:  # type: ignore[no-untyped-def]
    """Boot the guest once; its console output."""
    cache = IMAGES_DIR / "cache"
    deb = debian.download(testvm.kernel_package(cache), cache)
    files = debian.extract(
        deb, ["boot/vmlinuz-*", *(f"lib/modules/*/kernel/{m}" for m in VFIO_MODULES)]
    )
    (kernel_name,) = [n for n in files if n.startswith("boot/vmlinuz-")]
    version = kernel_name.removeprefix("boot/vmlinuz-")
    modules = {Path(m).name: files[f"lib/modules/{version}/kernel/{m}"] for m in VFIO_MODULES}
    work = Path(f"/tmp/outpost-imgpci-vfio-{os.getpid()}")
    work.mkdir(mode=0o755)
    try:
        (work / "kernel").write_bytes(files[kernel_name])
        (work / "initrd").write_bytes(_initrd(cache, version, modules))
        console = work / "console.log"
        subprocess.run(
            [
                "qemu-system-x86_64",
                "-accel", "tcg",
                "-machine", "q35,kernel-irqchip=split",
                "-device", "intel-iommu,intremap=on",
                "-device", "edu",
                "-m", "256",
                "-display", "none",
                "-no-reboot",
                "-serial", f"file:{console}",
                "-kernel", str(work / "kernel"),
                "-initrd", str(work / "initrd"),
                "-append", "console=ttyS0 intel_iommu=on iommu=pt panic=-1 quiet",
            ],
            check=True,
            timeout=480,
        )  # fmt: skip
        return console.read_text(errors="replace")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _rebuild_sysfs(lines: list[str], root: Path) -> None:
    """The guest's PCI sysfs, on the host: real directories where its links point."""
    devices = root / "bus" / "pci" / "devices"
    devices.mkdir(parents=True)
    for line in lines:
        words = line.split()
        if words[0] == "DEV":
            address, target, cls, vendor, device = words[1:6]
            driver = words[6].removeprefix("driver=")
            group = words[7].removeprefix("group=")
            real = (devices / target).resolve()
            real.mkdir(parents=True, exist_ok=True)
            for name, value in (("class", cls), ("vendor", vendor), ("device", device)):
                (real / name).write_text(value + "\n")
            (devices / address).symlink_to(target)
            if driver:
                (real / "driver").symlink_to(driver)
            if group:
                (real / "iommu_group").symlink_to(group)
        elif words[0] == "GRP":
            group, address, target = words[1:4]
            link = root / "kernel" / "iommu_groups" / group / "devices" / address
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)


def _section(console: str, start: str, end: str) -> list[str]:
    body = console.split(start, 1)[1].split(end, 1)[0]
    return [ln.strip() for ln in body.splitlines() if ln.strip().startswith(("DEV ", "GRP "))]


def test_the_guest_booted_and_loaded_the_vfio_modules(guest_console):
    assert "VFIO-TEST-DONE" in guest_console, guest_console[-3000:]
    assert "VFIO-TEST insmod" not in guest_console


def test_the_edu_device_of_a_real_kernel_resolves_to_its_own_iommu_group(guest_console, tmp_path):
    _rebuild_sysfs(_section(guest_console, "VFIO-TEST-BEFORE", "VFIO-TEST-AFTER"), tmp_path)
    inv = read_pci_inventory(tmp_path)
    assert inv.iommu
    (edu,) = [f for f in inv.devices.values() if f"{f.vendor}:{f.device}" == EDU]
    assert edu.iommu_group is not None and edu.group_members == (edu.address,)
    assert resolve_adapters([Adapter(kind="pci", match=EDU)], tmp_path) == (edu.address,)


def test_the_resolved_device_binds_to_vfio_pci_and_gets_its_group_node(guest_console, tmp_path):
    _rebuild_sysfs(_section(guest_console, "VFIO-TEST-AFTER", "VFIO-NODES"), tmp_path)
    inv = read_pci_inventory(tmp_path)
    (edu,) = [f for f in inv.devices.values() if f"{f.vendor}:{f.device}" == EDU]
    assert edu.driver == "vfio-pci"
    nodes = guest_console.split("VFIO-NODES", 1)[1].splitlines()[0].split()
    assert str(edu.iommu_group) in nodes and "vfio" in nodes


def test_a_real_multi_function_group_goes_to_a_vm_whole(guest_console, tmp_path):
    """q35's 00:1f.x (LPC, SATA, SMBus) share group 4: asking for one brings them all."""
    _rebuild_sysfs(_section(guest_console, "VFIO-TEST-BEFORE", "VFIO-TEST-AFTER"), tmp_path)
    sata = Adapter(kind="pci", match="0000:00:1f.2")
    assert resolve_adapters([sata], tmp_path) == ("0000:00:1f.0", "0000:00:1f.2", "0000:00:1f.3")
