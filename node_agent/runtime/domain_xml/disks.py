"""Storage elements: ``<disk type='file'>`` and its ``<backingStore>`` chain."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from node_agent.runtime.domain_xml._xml import attr, sub, text

__all__ = ["BackingStore", "Disk"]


@dataclass(frozen=True)
class BackingStore:
    """``<backingStore type='file'>``: the read-only image under a qcow2 overlay.

    Written with an empty ``<backingStore/>`` inside, which ends the chain: libvirt then
    hands QEMU exactly this chain instead of following the file headers further.
    """

    source: str
    format: str = "raw"

    def to_element(self) -> ET.Element:
        element = ET.Element("backingStore", type="file")
        sub(element, "format", type=self.format)
        sub(element, "source", file=self.source)
        sub(element, "backingStore")
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> BackingStore:
        return cls(
            source=attr(element.find("source"), "file"),
            format=attr(element.find("format"), "type"),
        )


@dataclass(frozen=True)
class Disk:
    """``<disk type='file'>`` backed by an image file (raw or qcow2, maybe an overlay)."""

    source: str
    target_dev: str
    target_bus: str = "virtio"
    driver_type: str = "raw"
    device: str = "disk"
    readonly: bool = False
    backing: BackingStore | None = None
    serial: str = ""
    cache: str = ""
    discard: str = ""
    boot_order: int | None = None

    def to_element(self) -> ET.Element:
        element = ET.Element("disk", type="file", device=self.device)
        driver = {"name": "qemu", "type": self.driver_type}
        if self.cache:
            driver["cache"] = self.cache
        if self.discard:
            driver["discard"] = self.discard
        sub(element, "driver", **driver)
        sub(element, "source", file=self.source)
        if self.backing is not None:
            element.append(self.backing.to_element())
        sub(element, "target", dev=self.target_dev, bus=self.target_bus)
        if self.serial:
            sub(element, "serial", self.serial)
        if self.boot_order is not None:
            sub(element, "boot", order=str(self.boot_order))
        if self.readonly:
            sub(element, "readonly")
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Disk:
        driver, target = element.find("driver"), element.find("target")
        backing = element.find("backingStore")
        if backing is not None and backing.find("source") is None:
            backing = None
        return cls(
            source=attr(element.find("source"), "file"),
            target_dev=attr(target, "dev"),
            target_bus=attr(target, "bus"),
            driver_type=attr(driver, "type"),
            device=element.get("device", "disk"),
            readonly=element.find("readonly") is not None,
            backing=BackingStore.from_element(backing) if backing is not None else None,
            serial=text(element.find("serial")),
            cache=attr(driver, "cache"),
            discard=attr(driver, "discard"),
            boot_order=int(order) if (order := attr(element.find("boot"), "order")) else None,
        )
