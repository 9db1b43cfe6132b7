"""Elements describing the machine itself: memory, vCPUs, CPU model, ``<os>``, features."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from node_agent.runtime.domain_xml._xml import UNIT_TO_KIB, attr, sub, text

__all__ = [
    "Cpu",
    "Features",
    "Memory",
    "Os",
    "OsDiskBoot",
    "OsKernelBoot",
    "Vcpu",
    "os_from_element",
]


@dataclass(frozen=True)
class Memory:
    """``<memory unit='MiB'>N</memory>``: the guest's RAM."""

    mib: int

    def to_element(self) -> ET.Element:
        element = ET.Element("memory", unit="MiB")
        element.text = str(self.mib)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Memory:
        unit = element.get("unit", "KiB").lower()
        kib = int(text(element, "0")) * UNIT_TO_KIB[unit]
        return cls(mib=int(kib // 1024))


@dataclass(frozen=True)
class Vcpu:
    """``<vcpu>N</vcpu>``: number of virtual CPUs."""

    count: int

    def to_element(self) -> ET.Element:
        element = ET.Element("vcpu")
        element.text = str(self.count)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Vcpu:
        return cls(count=int(text(element, "1")))


@dataclass(frozen=True)
class Cpu:
    """``<cpu mode='…'><model>…</model></cpu>``: the CPU model exposed to the guest."""

    mode: str = ""
    model: str = ""

    def to_element(self) -> ET.Element:
        element = ET.Element("cpu")
        if self.mode:
            element.set("mode", self.mode)
        if self.model:
            sub(element, "model", self.model)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Cpu:
        return cls(mode=element.get("mode", ""), model=text(element.find("model")))


def _os_type(element: ET.Element, os_type: str, arch: str, machine: str) -> None:
    type_attrs = {"arch": arch}
    if machine:
        type_attrs["machine"] = machine
    sub(element, "type", os_type, **type_attrs)


@dataclass(frozen=True)
class OsKernelBoot:
    """``<os>`` booting a kernel directly: ``<kernel>``, ``<initrd>``, ``<cmdline>``."""

    kernel: str
    initrd: str = ""
    cmdline: str = ""
    arch: str = "x86_64"
    machine: str = ""
    os_type: str = "hvm"

    def to_element(self) -> ET.Element:
        element = ET.Element("os")
        _os_type(element, self.os_type, self.arch, self.machine)
        sub(element, "kernel", self.kernel)
        if self.initrd:
            sub(element, "initrd", self.initrd)
        if self.cmdline:
            sub(element, "cmdline", self.cmdline)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> OsKernelBoot:
        type_element = element.find("type")
        return cls(
            kernel=text(element.find("kernel")),
            initrd=text(element.find("initrd")),
            cmdline=text(element.find("cmdline")),
            arch=attr(type_element, "arch"),
            machine=attr(type_element, "machine"),
            os_type=text(type_element, "hvm"),
        )


@dataclass(frozen=True)
class OsDiskBoot:
    """``<os>`` booting through the firmware from devices: ``<boot dev='hd'/>``, …"""

    boot_devs: tuple[str, ...] = ("hd",)
    arch: str = "x86_64"
    machine: str = ""
    os_type: str = "hvm"

    def to_element(self) -> ET.Element:
        element = ET.Element("os")
        _os_type(element, self.os_type, self.arch, self.machine)
        for dev in self.boot_devs:
            sub(element, "boot", dev=dev)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> OsDiskBoot:
        type_element = element.find("type")
        return cls(
            boot_devs=tuple(b.get("dev", "") for b in element.findall("boot")),
            arch=attr(type_element, "arch"),
            machine=attr(type_element, "machine"),
            os_type=text(type_element, "hvm"),
        )


Os = OsKernelBoot | OsDiskBoot


def os_from_element(element: ET.Element) -> Os:
    """A kernel boot when ``<os>`` names a ``<kernel>``, else a boot from devices."""
    if element.find("kernel") is not None:
        return OsKernelBoot.from_element(element)
    return OsDiskBoot.from_element(element)


@dataclass(frozen=True)
class Features:
    """``<features>``: hypervisor features; only the ones Outpost uses are modelled."""

    acpi: bool = False
    apic: bool = False

    def to_element(self) -> ET.Element:
        element = ET.Element("features")
        if self.acpi:
            sub(element, "acpi")
        if self.apic:
            sub(element, "apic")
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Features:
        return cls(acpi=element.find("acpi") is not None, apic=element.find("apic") is not None)
