"""(Re)build the fabricated sysfs trees next to this file: ``python make_trees.py``.

The layout follows real machines: functions live under ``devices/pci0000:00/...`` (behind
their root port), ``bus/pci/devices/<addr>`` links to them, ``driver`` links into
``bus/pci/drivers/<name>``, ``iommu_group`` links into ``kernel/iommu_groups/<N>`` whose
``devices/`` links back.  All links are relative, so a tree works wherever it is copied.

* ``nvidia``: a TU104 GPU 10de:1eb8 at 0000:01:00.0 and its HDMI audio 10de:10f8 at
  0000:01:00.1, in IOMMU group 1 with their root port 0000:00:01.0 (a desktop's layout).
* ``intel``: an Iris Xe iGPU 8086:9a49 at 0000:00:02.0, alone in group 1 (a laptop's).
* ``iommu-off``: the ``nvidia`` machine booted without an IOMMU: no groups, no links.
* ``nvidia-shared-group``: the ``nvidia`` machine whose group 1 also holds an i210 NIC
  8086:1533 at 0000:02:00.0 behind a second root port without ACS.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent

# address, parent bridge ('' = root complex), class, vendor, device, driver, group
Function = tuple[str, str, str, str, str, str, int]

DESKTOP: list[Function] = [
    ("0000:00:00.0", "", "0x060000", "0x8086", "0x3e30", "skl_uncore", 0),
    ("0000:00:01.0", "", "0x060400", "0x8086", "0x1901", "pcieport", 1),
    ("0000:01:00.0", "0000:00:01.0", "0x030000", "0x10de", "0x1eb8", "nvidia", 1),
    ("0000:01:00.1", "0000:00:01.0", "0x040300", "0x10de", "0x10f8", "snd_hda_intel", 1),
    ("0000:00:14.0", "", "0x0c0330", "0x8086", "0xa36d", "xhci_hcd", 2),
    ("0000:00:1f.6", "", "0x020000", "0x8086", "0x15bc", "e1000e", 3),
]
LAPTOP: list[Function] = [
    ("0000:00:00.0", "", "0x060000", "0x8086", "0x9a14", "", 0),
    ("0000:00:02.0", "", "0x030000", "0x8086", "0x9a49", "i915", 1),
    ("0000:00:14.0", "", "0x0c0330", "0x8086", "0xa0ed", "xhci_hcd", 2),
    ("0000:00:1f.0", "", "0x060100", "0x8086", "0xa082", "", 3),
    ("0000:00:1f.3", "", "0x040380", "0x8086", "0xa0c8", "snd_hda_intel", 3),
]
SHARED = [
    *DESKTOP,
    ("0000:00:1c.0", "", "0x060400", "0x8086", "0xa33c", "pcieport", 1),
    ("0000:02:00.0", "0000:00:1c.0", "0x020000", "0x8086", "0x1533", "igb", 1),
]


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def build(root: Path, functions: list[Function], iommu: bool = True) -> None:
    if root.exists():
        shutil.rmtree(root)
    paths: dict[str, Path] = {}
    for address, parent, cls, vendor, device, driver, group in functions:
        base = paths[parent] if parent else root / "devices" / "pci0000:00"
        path = paths[address] = base / address
        path.mkdir(parents=True)
        for name, value in (("class", cls), ("vendor", vendor), ("device", device)):
            (path / name).write_text(value + "\n")
        _link(root / "bus" / "pci" / "devices" / address, path)
        if driver:
            (root / "bus" / "pci" / "drivers" / driver).mkdir(parents=True, exist_ok=True)
            (root / "bus" / "pci" / "drivers" / driver / "bind").touch()
            _link(path / "driver", root / "bus" / "pci" / "drivers" / driver)
        if iommu:
            group_dir = root / "kernel" / "iommu_groups" / str(group)
            _link(path / "iommu_group", group_dir)
            _link(group_dir / "devices" / address, path)


def main() -> None:
    build(HERE / "nvidia", DESKTOP)
    build(HERE / "intel", LAPTOP)
    build(HERE / "iommu-off", DESKTOP, iommu=False)
    build(HERE / "nvidia-shared-group", SHARED)


if __name__ == "__main__":
    main()
