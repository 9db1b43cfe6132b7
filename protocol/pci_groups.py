"""The IOMMU-group rule for gpu/pci adapters, shared by the agent (sysfs) and the controller
(the node's reported inventory), so both refuse the same things with the same words.

vfio hands a VM whole IOMMU groups: every endpoint of the group must go to the VM
(PCI-to-PCI bridges may stay on the host).  An adapter's group is assignable as a whole
when each other endpoint in it is either asked for by the same app or another function of
the same card as a requested device (a GPU's HDMI audio function).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from protocol.desired_state import Adapter

__all__ = ["PCI_KINDS", "AdapterRefused", "PciFunctionLike", "find_function", "resolve_functions"]

PCI_KINDS = ("gpu", "pci")


class PciFunctionLike(Protocol):
    @property
    def address(self) -> str: ...
    @property
    def vendor(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def class_code(self) -> str: ...
    @property
    def driver(self) -> str: ...
    @property
    def iommu_group(self) -> int | None: ...
    @property
    def group_members(self) -> Sequence[str]: ...
    @property
    def is_gpu(self) -> bool: ...
    @property
    def is_bridge(self) -> bool: ...


F = TypeVar("F", bound=PciFunctionLike)


class AdapterRefused(ValueError):
    """The adapter cannot be passed through on this node; the message says why."""


def _slot(address: str) -> str:
    return address.rsplit(".", 1)[0]


def find_function(devices: Mapping[str, F], iommu: bool, adapter: Adapter) -> F:
    """The one function ``adapter`` names, checked to be a passable endpoint with a group."""
    label = f"adapter {adapter.kind} {adapter.match}"
    if adapter.match.count(":") == 2:  # a PCI address
        found = devices.get(adapter.match)
        if found is None:
            raise AdapterRefused(f"{label}: no PCI device at that address on this node")
    else:
        vendor, device = adapter.match.split(":")
        matches = [f for f in devices.values() if (f.vendor, f.device) == (vendor, device)]
        if not matches:
            raise AdapterRefused(f"{label}: no PCI device with that vendor:device on this node")
        if len(matches) > 1:
            where = ", ".join(f.address for f in matches)
            raise AdapterRefused(f"{label}: matches {where}; name one PCI address instead")
        found = matches[0]
    if adapter.kind == "gpu" and not found.is_gpu:
        raise AdapterRefused(
            f"{label}: {found.address} is not a display controller (class {found.class_code})"
        )
    if found.is_bridge:
        raise AdapterRefused(f"{label}: {found.address} is a PCI bridge, not a device")
    if not iommu or found.iommu_group is None:
        raise AdapterRefused(
            f"{label}: the IOMMU is off on this node ({found.address} has no IOMMU group); "
            "enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on or amd_iommu=on"
        )
    return found


def _group_functions(devices: Mapping[str, F], chosen: F, slots: set[str]) -> list[str]:
    functions = []
    for address in chosen.group_members or (chosen.address,):
        member = devices.get(address)
        if member is not None and member.is_bridge:
            continue
        if member is None or _slot(address) not in slots:
            what = (
                f"{address} ({member.vendor}:{member.device}, class {member.class_code}, "
                f"driver {member.driver or 'none'})"
                if member is not None
                else address
            )
            raise AdapterRefused(
                f"{chosen.address}: IOMMU group {chosen.iommu_group} also holds {what}, "
                "which is not assigned to this app; the group can only be passed through "
                "as a whole"
            )
        functions.append(address)
    return functions


def resolve_functions(
    devices: Mapping[str, F], iommu: bool, adapters: Sequence[Adapter]
) -> tuple[str, ...]:
    """Every function address to pass through for the gpu/pci ``adapters``, sorted, once.

    Other adapter kinds are ignored.  Raises :class:`AdapterRefused` when the IOMMU is off,
    a device is missing, or a group is not assignable as a whole.  An ``optional`` adapter
    that cannot be passed through is left out instead (the app runs without it: the
    inference VM falls back to its CPU).
    """
    chosen: list[tuple[F, bool]] = []
    for adapter in adapters:
        if adapter.kind not in PCI_KINDS:
            continue
        try:
            chosen.append((find_function(devices, iommu, adapter), adapter.optional))
        except AdapterRefused:
            if not adapter.optional:
                raise
    slots = {_slot(f.address) for f, _ in chosen}
    addresses: set[str] = set()
    for function, optional in chosen:
        try:
            addresses.update(_group_functions(devices, function, slots))
        except AdapterRefused:
            if not optional:
                raise
    return tuple(sorted(addresses))
