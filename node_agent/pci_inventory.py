"""PCI devices and IOMMU groups read from sysfs (under a configurable root, for tests).

Reads ``<root>/bus/pci/devices/<address>/{class,vendor,device}``, the ``driver`` and
``iommu_group`` links (only their last component is used, so the tree may live anywhere)
and ``<root>/kernel/iommu_groups/<N>/devices/*``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from protocol.inventory import MAX_GROUP_MEMBERS, MAX_PCI_DEVICES, PciDevice

__all__ = ["PciFunction", "PciInventory", "read_pci_inventory"]

log = logging.getLogger(__name__)
_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_BRIDGE_CLASSES = ("0604", "0609")  # PCI-to-PCI and semi-transparent PCI-to-PCI bridges


@dataclass(frozen=True)
class PciFunction:
    address: str
    class_code: str
    vendor: str
    device: str
    driver: str
    iommu_group: int | None
    group_members: tuple[str, ...]

    @property
    def is_gpu(self) -> bool:
        """Display controllers: class 0x03xxxx (VGA, XGA, 3D)."""
        return self.class_code.startswith("03")

    @property
    def is_bridge(self) -> bool:
        """PCI-to-PCI bridges, which vfio lets stay on the host inside an assigned group."""
        return self.class_code[:4] in _BRIDGE_CLASSES

    def to_message(self) -> PciDevice:
        return PciDevice(
            address=self.address,
            class_code=self.class_code,
            vendor=self.vendor,
            device=self.device,
            driver=self.driver,
            iommu_group=self.iommu_group,
            group_members=list(self.group_members[:MAX_GROUP_MEMBERS]),
            is_gpu=self.is_gpu,
            is_bridge=self.is_bridge,
        )


@dataclass(frozen=True)
class PciInventory:
    iommu: bool
    """True when the kernel exposes IOMMU groups."""
    devices: dict[str, PciFunction]


def _hex(path: Path, digits: int) -> str:
    text = path.read_text().strip().lower().removeprefix("0x")
    if not re.fullmatch(rf"[0-9a-f]{{{digits}}}", text):
        raise ValueError(f"{path}: unexpected content {text[:20]!r}")
    return text


def _link_name(path: Path) -> str:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return ""


def _group_members(root: Path, group: int) -> tuple[str, ...]:
    devices = root / "kernel" / "iommu_groups" / str(group) / "devices"
    try:
        names = [n for n in os.listdir(devices) if _ADDRESS.match(n)]
    except OSError:
        return ()
    return tuple(sorted(names))


def _read_function(root: Path, entry: Path) -> PciFunction:
    group_name = _link_name(entry / "iommu_group")
    group = int(group_name) if group_name.isdigit() else None
    driver = _link_name(entry / "driver")
    return PciFunction(
        address=entry.name,
        class_code=_hex(entry / "class", 6),
        vendor=_hex(entry / "vendor", 4),
        device=_hex(entry / "device", 4),
        driver=driver if re.fullmatch(r"[A-Za-z0-9_.-]{0,64}", driver) else "",
        iommu_group=group,
        group_members=_group_members(root, group) if group is not None else (),
    )


def read_pci_inventory(root: Path) -> PciInventory:
    """Every PCI function under ``root`` (e.g. ``/sys``); unreadable ones are skipped."""
    root = Path(root)
    groups = root / "kernel" / "iommu_groups"
    try:
        iommu = any(p.name.isdigit() for p in groups.iterdir())
    except OSError:
        iommu = False
    devices: dict[str, PciFunction] = {}
    base = root / "bus" / "pci" / "devices"
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        entries = []
    for name in entries:
        if not _ADDRESS.match(name):
            continue
        if len(devices) >= MAX_PCI_DEVICES:
            log.warning("more than %d PCI functions; the rest are not listed", MAX_PCI_DEVICES)
            break
        try:
            devices[name] = _read_function(root, base / name)
        except (OSError, ValueError) as exc:
            log.warning("PCI function %s skipped: %s", name, exc)
    return PciInventory(iommu=iommu, devices=devices)
