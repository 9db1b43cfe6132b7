"""The node's hardware inventory as reported in ``info`` (and at registration)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from protocol.model_base import MAX_COUNT, StrictModel

__all__ = [
    "MAX_PCI_DEVICES",
    "NodeInventory",
    "PciAddress",
    "PciDevice",
    "RegistrationInventory",
]

PciAddress = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
]
Hex4 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{4}$")]
MAX_PCI_DEVICES = 512
MAX_GROUP_MEMBERS = 64


class PciDevice(StrictModel):
    """One PCI function as sysfs shows it."""

    address: PciAddress
    class_code: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{6}$")]
    """Base class, sub-class, prog-if: ``030000`` is a VGA controller."""
    vendor: Hex4
    device: Hex4
    driver: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{0,64}$")] = ""
    """The bound kernel driver ('' when none)."""
    iommu_group: int | None = Field(default=None, ge=0, le=1 << 20)
    """None when the IOMMU is off (no group)."""
    group_members: list[PciAddress] = Field(default_factory=list, max_length=MAX_GROUP_MEMBERS)
    """Every function in the same IOMMU group, this one included, sorted."""
    is_gpu: bool = False
    is_bridge: bool = False


class NodeInventory(StrictModel):
    hostname: Annotated[str, StringConstraints(max_length=64)] = ""
    cpus: int = Field(default=0, ge=0, le=65536)
    memory_kib: int = Field(default=0, ge=0, le=MAX_COUNT)
    kernel: Annotated[str, StringConstraints(max_length=64)] = ""
    machine: Annotated[str, StringConstraints(max_length=32)] = ""
    kvm_device: bool = False
    iommu: bool = False
    """The kernel has IOMMU groups (passthrough is possible at all)."""
    pci: list[PciDevice] = Field(default_factory=list, max_length=MAX_PCI_DEVICES)


class RegistrationInventory(NodeInventory):
    """The inventory sent with ``register``: the node's, plus which TPM it has."""

    tpm: Annotated[str, StringConstraints(pattern=r"^[a-z]{0,16}$")] = "none"
    """``none``, ``swtpm`` or ``device`` (the agent's TPM setting's kind)."""
