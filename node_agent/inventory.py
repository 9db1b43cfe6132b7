"""The node's hardware/OS inventory: sent at registration and refreshed in every ``info``."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

from node_agent.pci_inventory import read_pci_inventory
from protocol.inventory import NodeInventory

__all__ = ["collect_inventory", "node_inventory"]


def _mem_total_kib() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def node_inventory(sysfs_root: Path = Path("/sys")) -> NodeInventory:
    """Host facts plus the PCI functions and IOMMU groups under ``sysfs_root``."""
    pci = read_pci_inventory(sysfs_root)
    return NodeInventory(
        hostname=socket.gethostname()[:64],
        cpus=os.cpu_count() or 0,
        memory_kib=_mem_total_kib(),
        kernel=platform.release()[:64],
        machine=platform.machine()[:32],
        kvm_device=os.path.exists("/dev/kvm"),
        iommu=pci.iommu,
        pci=[f.to_message() for f in pci.devices.values()],
    )


def collect_inventory(sysfs_root: Path = Path("/sys")) -> dict[str, Any]:
    """The inventory as JSON-ready data (the registration request's form)."""
    return node_inventory(sysfs_root).model_dump(mode="json")
