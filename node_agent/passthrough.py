"""Which PCI functions to pass through for an app's gpu/pci adapters, checked against sysfs.

Called before a VM starts (the controller checked the node's reported inventory already;
the host may have changed since).  The rule itself (whole IOMMU groups, bridges may stay,
a card's sibling functions come along) lives in :mod:`protocol.pci_groups`, shared with
the controller.  Anything not passable (IOMMU off, device missing, an unrelated device in
the group) raises :class:`PassthroughError`, a permanent error: the app goes to ERROR.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from node_agent.pci_inventory import read_pci_inventory
from node_agent.runtime.base import PermanentError
from protocol.desired_state import Adapter
from protocol.pci_groups import PCI_KINDS, AdapterRefused, resolve_functions

__all__ = ["PassthroughError", "resolve_adapters"]


class PassthroughError(PermanentError):
    """The adapters cannot be passed through on this node (the app is not started)."""


def resolve_adapters(adapters: Sequence[Adapter], sysfs_root: Path) -> tuple[str, ...]:
    """Every PCI function address to pass through for the gpu/pci ``adapters``, sorted.

    USB adapters are ignored here (``()`` when there is nothing to pass through).
    """
    if not any(a.kind in PCI_KINDS for a in adapters):
        return ()
    inv = read_pci_inventory(sysfs_root)
    try:
        return resolve_functions(inv.devices, inv.iommu, adapters)
    except AdapterRefused as exc:
        raise PassthroughError(str(exc)) from exc
