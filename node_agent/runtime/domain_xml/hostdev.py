"""Host devices passed through to a guest: USB by vendor/product, PCI by address."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from node_agent.runtime.domain_xml._xml import attr, sub

__all__ = ["HostdevPci", "HostdevUsb"]

_PCI_ADDRESS = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")


@dataclass(frozen=True)
class HostdevUsb:
    """``<hostdev mode='subsystem' type='usb'>``: a host USB device by vendor/product id."""

    vendor: str
    product: str

    def to_element(self) -> ET.Element:
        element = ET.Element("hostdev", mode="subsystem", type="usb", managed="yes")
        source = sub(element, "source")
        sub(source, "vendor", id=self.vendor)
        sub(source, "product", id=self.product)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> HostdevUsb:
        return cls(
            vendor=attr(element.find("source/vendor"), "id"),
            product=attr(element.find("source/product"), "id"),
        )


@dataclass(frozen=True)
class HostdevPci:
    """``<hostdev mode='subsystem' type='pci' managed='yes'>``: one host PCI function.

    ``managed``: libvirt detaches the function from its host driver (binds vfio-pci)
    before start and gives it back after stop.
    """

    domain: int
    bus: int
    slot: int
    function: int
    managed: bool = True

    @classmethod
    def from_address(cls, address: str, managed: bool = True) -> HostdevPci:
        """From a full sysfs address ``DDDD:BB:SS.F`` (ValueError otherwise)."""
        match = _PCI_ADDRESS.match(address)
        if match is None:
            raise ValueError(f"not a PCI address (DDDD:BB:SS.F): {address!r}")
        domain, bus, slot, function = (int(g, 16) for g in match.groups())
        if slot > 0x1F:
            raise ValueError(f"PCI slot out of range in {address!r}")
        return cls(domain, bus, slot, function, managed)

    @property
    def address(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function:x}"

    def to_element(self) -> ET.Element:
        element = ET.Element(
            "hostdev", mode="subsystem", type="pci", managed="yes" if self.managed else "no"
        )
        source = sub(element, "source")
        sub(
            source,
            "address",
            domain=f"0x{self.domain:04x}",
            bus=f"0x{self.bus:02x}",
            slot=f"0x{self.slot:02x}",
            function=f"0x{self.function:x}",
        )
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> HostdevPci:
        address = element.find("source/address")
        return cls(
            domain=int(attr(address, "domain", "0"), 0),
            bus=int(attr(address, "bus", "0"), 0),
            slot=int(attr(address, "slot", "0"), 0),
            function=int(attr(address, "function", "0"), 0),
            managed=element.get("managed", "no") == "yes",
        )
