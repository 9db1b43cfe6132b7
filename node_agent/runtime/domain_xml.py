"""Typed model of the libvirt domain XML Outpost uses, and its conversion to and from XML.

One small frozen dataclass per XML element, each with ``to_element()`` (build an
:class:`xml.etree.ElementTree.Element`) and ``from_element()`` (read one back, ignoring
whatever libvirt added that the model does not know).  :class:`Domain` adds
``to_xml()``/``from_xml()`` for whole documents.

This module holds NO policy: it does not decide which devices a VM gets, which
defaults are safe or how files are laid out; it only converts objects to XML and
back (as nova's ``libvirt/config.py``).  The policy that turns a workload spec
into a :class:`Domain` lives in :mod:`node_agent.runtime.vm_policy`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "OUTPOST_NS",
    "Console",
    "Controller",
    "Cpu",
    "Devices",
    "Disk",
    "Domain",
    "Features",
    "HostdevUsb",
    "Interface",
    "MemBalloon",
    "Memory",
    "OsKernelBoot",
    "OutpostMetadata",
    "Serial",
    "Vcpu",
]

OUTPOST_NS = "https://outpost.dev/xmlns/app/1"
"""Namespace of Outpost's element inside the domain's ``<metadata>``."""

ET.register_namespace("outpost", OUTPOST_NS)

_UNIT_TO_KIB = {
    "b": 1 / 1024,
    "bytes": 1 / 1024,
    "k": 1,
    "kib": 1,
    "kb": 1000 / 1024,
    "m": 1024,
    "mib": 1024,
    "mb": 1000**2 / 1024,
    "g": 1024**2,
    "gib": 1024**2,
    "gb": 1000**3 / 1024,
}


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


def _text(element: ET.Element | None, default: str = "") -> str:
    if element is None or element.text is None:
        return default
    return element.text.strip()


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
        kib = int(_text(element, "0")) * _UNIT_TO_KIB[unit]
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
        return cls(count=int(_text(element, "1")))


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
            _sub(element, "model", self.model)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Cpu:
        return cls(mode=element.get("mode", ""), model=_text(element.find("model")))


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
        type_attrs = {"arch": self.arch}
        if self.machine:
            type_attrs["machine"] = self.machine
        _sub(element, "type", self.os_type, **type_attrs)
        _sub(element, "kernel", self.kernel)
        if self.initrd:
            _sub(element, "initrd", self.initrd)
        if self.cmdline:
            _sub(element, "cmdline", self.cmdline)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> OsKernelBoot:
        type_element = element.find("type")
        return cls(
            kernel=_text(element.find("kernel")),
            initrd=_text(element.find("initrd")),
            cmdline=_text(element.find("cmdline")),
            arch=type_element.get("arch", "") if type_element is not None else "",
            machine=type_element.get("machine", "") if type_element is not None else "",
            os_type=_text(type_element, "hvm"),
        )


@dataclass(frozen=True)
class Features:
    """``<features>``: hypervisor features; only the ones Outpost uses are modelled."""

    acpi: bool = False
    apic: bool = False

    def to_element(self) -> ET.Element:
        element = ET.Element("features")
        if self.acpi:
            _sub(element, "acpi")
        if self.apic:
            _sub(element, "apic")
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Features:
        return cls(acpi=element.find("acpi") is not None, apic=element.find("apic") is not None)


@dataclass(frozen=True)
class Disk:
    """``<disk type='file'>`` backed by an image file."""

    source: str
    target_dev: str
    target_bus: str = "virtio"
    driver_type: str = "raw"
    device: str = "disk"
    readonly: bool = False

    def to_element(self) -> ET.Element:
        element = ET.Element("disk", type="file", device=self.device)
        _sub(element, "driver", name="qemu", type=self.driver_type)
        _sub(element, "source", file=self.source)
        _sub(element, "target", dev=self.target_dev, bus=self.target_bus)
        if self.readonly:
            _sub(element, "readonly")
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Disk:
        driver = element.find("driver")
        source = element.find("source")
        target = element.find("target")
        return cls(
            source=source.get("file", "") if source is not None else "",
            target_dev=target.get("dev", "") if target is not None else "",
            target_bus=target.get("bus", "") if target is not None else "",
            driver_type=driver.get("type", "") if driver is not None else "",
            device=element.get("device", "disk"),
            readonly=element.find("readonly") is not None,
        )


@dataclass(frozen=True)
class Serial:
    """``<serial type='pty'>`` whose output libvirt (virtlogd) also copies into ``log_file``."""

    log_file: str = ""
    append: bool = False
    port: int = 0

    def to_element(self) -> ET.Element:
        element = ET.Element("serial", type="pty")
        if self.log_file:
            _sub(element, "log", file=self.log_file, append="on" if self.append else "off")
        _sub(element, "target", port=str(self.port))
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Serial:
        log = element.find("log")
        target = element.find("target")
        return cls(
            log_file=log.get("file", "") if log is not None else "",
            append=log is not None and log.get("append") == "on",
            port=int(target.get("port", "0")) if target is not None else 0,
        )


@dataclass(frozen=True)
class Console:
    """``<console type='pty'>`` attached to a serial port (``virsh console``)."""

    target_type: str = "serial"
    port: int = 0

    def to_element(self) -> ET.Element:
        element = ET.Element("console", type="pty")
        _sub(element, "target", type=self.target_type, port=str(self.port))
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Console:
        target = element.find("target")
        if target is None:
            return cls()
        return cls(target_type=target.get("type", "serial"), port=int(target.get("port", "0")))


@dataclass(frozen=True)
class Controller:
    """``<controller type='…' model='…'/>``, e.g. ``usb``/``none`` for no USB bus at all."""

    type: str
    model: str = ""
    index: int | None = None

    def to_element(self) -> ET.Element:
        element = ET.Element("controller", type=self.type)
        if self.index is not None:
            element.set("index", str(self.index))
        if self.model:
            element.set("model", self.model)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Controller:
        index = element.get("index")
        return cls(
            type=element.get("type", ""),
            model=element.get("model", ""),
            index=int(index) if index is not None else None,
        )


@dataclass(frozen=True)
class Interface:
    """``<interface type='bridge'>``: a NIC plugged into a host bridge through a tap."""

    source_bridge: str
    mac: str = ""
    model: str = "virtio"
    target_dev: str = ""

    def to_element(self) -> ET.Element:
        element = ET.Element("interface", type="bridge")
        if self.mac:
            _sub(element, "mac", address=self.mac)
        _sub(element, "source", bridge=self.source_bridge)
        if self.target_dev:
            _sub(element, "target", dev=self.target_dev)
        if self.model:
            _sub(element, "model", type=self.model)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Interface:
        mac, source = element.find("mac"), element.find("source")
        target, model = element.find("target"), element.find("model")
        return cls(
            source_bridge=source.get("bridge", "") if source is not None else "",
            mac=mac.get("address", "") if mac is not None else "",
            model=model.get("type", "") if model is not None else "",
            target_dev=target.get("dev", "") if target is not None else "",
        )


@dataclass(frozen=True)
class HostdevUsb:
    """``<hostdev mode='subsystem' type='usb'>``: a host USB device by vendor/product id."""

    vendor: str
    product: str

    def to_element(self) -> ET.Element:
        element = ET.Element("hostdev", mode="subsystem", type="usb", managed="yes")
        source = _sub(element, "source")
        _sub(source, "vendor", id=self.vendor)
        _sub(source, "product", id=self.product)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> HostdevUsb:
        vendor, product = element.find("source/vendor"), element.find("source/product")
        return cls(
            vendor=vendor.get("id", "") if vendor is not None else "",
            product=product.get("id", "") if product is not None else "",
        )


@dataclass(frozen=True)
class MemBalloon:
    """``<memballoon model='…'/>``; model ``none`` means no balloon device."""

    model: str = "none"

    def to_element(self) -> ET.Element:
        return ET.Element("memballoon", model=self.model)

    @classmethod
    def from_element(cls, element: ET.Element) -> MemBalloon:
        return cls(model=element.get("model", ""))


@dataclass(frozen=True)
class Devices:
    """``<devices>``: the element types above, in libvirt's order."""

    emulator: str = ""
    disks: tuple[Disk, ...] = ()
    controllers: tuple[Controller, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    serials: tuple[Serial, ...] = ()
    consoles: tuple[Console, ...] = ()
    hostdevs: tuple[HostdevUsb, ...] = ()
    memballoon: MemBalloon | None = None

    def to_element(self) -> ET.Element:
        element = ET.Element("devices")
        if self.emulator:
            _sub(element, "emulator", self.emulator)
        children = (
            *self.disks,
            *self.controllers,
            *self.interfaces,
            *self.serials,
            *self.consoles,
            *self.hostdevs,
        )
        element.extend(child.to_element() for child in children)
        if self.memballoon is not None:
            element.append(self.memballoon.to_element())
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Devices:
        balloon = element.find("memballoon")
        return cls(
            emulator=_text(element.find("emulator")),
            disks=tuple(Disk.from_element(e) for e in element.findall("disk")),
            controllers=tuple(Controller.from_element(e) for e in element.findall("controller")),
            interfaces=tuple(
                Interface.from_element(e)
                for e in element.findall("interface")
                if e.get("type") == "bridge"
            ),
            serials=tuple(Serial.from_element(e) for e in element.findall("serial")),
            consoles=tuple(Console.from_element(e) for e in element.findall("console")),
            hostdevs=tuple(
                HostdevUsb.from_element(e)
                for e in element.findall("hostdev")
                if e.get("type") == "usb"
            ),
            memballoon=MemBalloon.from_element(balloon) if balloon is not None else None,
        )


@dataclass(frozen=True)
class OutpostMetadata:
    """``<outpost:app …/>`` in the domain's ``<metadata>``: which app and node own the domain."""

    app_uuid: str
    node_uuid: str
    image_sha256: str
    app_name: str = ""

    TAG: ClassVar[str] = f"{{{OUTPOST_NS}}}app"

    def to_element(self) -> ET.Element:
        return ET.Element(
            self.TAG,
            {
                "app-uuid": self.app_uuid,
                "node-uuid": self.node_uuid,
                "image-sha256": self.image_sha256,
                "app-name": self.app_name,
            },
        )

    def to_xml(self) -> str:
        """The bare element, as ``virDomainSetMetadata`` takes it."""
        return ET.tostring(self.to_element(), encoding="unicode")

    @classmethod
    def from_element(cls, element: ET.Element) -> OutpostMetadata:
        if element.tag != cls.TAG:
            raise ValueError(f"expected <{cls.TAG}>, got <{element.tag}>")
        try:
            return cls(
                app_uuid=element.attrib["app-uuid"],
                node_uuid=element.attrib["node-uuid"],
                image_sha256=element.attrib["image-sha256"],
                app_name=element.get("app-name", ""),
            )
        except KeyError as exc:
            raise ValueError(f"<{cls.TAG}> lacks attribute {exc}") from None

    @classmethod
    def from_xml(cls, text: str) -> OutpostMetadata:
        """Parse the element alone or find it in a whole domain XML."""
        root = ET.fromstring(text)
        if root.tag == cls.TAG:
            return cls.from_element(root)
        found = root.find(f"metadata/{cls.TAG}")
        if found is None:
            raise ValueError("no Outpost metadata in the document")
        return cls.from_element(found)

    @classmethod
    def from_metadata_api(cls, text: str) -> OutpostMetadata:
        """Parse what ``virDomainGetMetadata(ELEMENT, OUTPOST_NS)`` returns.

        libvirt selects the element by namespace but serialises it without the namespace
        declaration when that sat on an ancestor (``<app …/>``), so a bare ``app`` is
        accepted here as well.
        """
        root = ET.fromstring(text)
        if root.tag == "app":
            root.tag = cls.TAG
        return cls.from_element(root)


@dataclass(frozen=True)
class Domain:
    """``<domain type='kvm|qemu'>``: a whole VM definition."""

    type: str
    name: str
    memory: Memory
    vcpu: Vcpu
    os: OsKernelBoot
    uuid: str = ""
    features: Features = field(default_factory=Features)
    cpu: Cpu | None = None
    on_poweroff: str = ""
    on_reboot: str = ""
    on_crash: str = ""
    devices: Devices = field(default_factory=Devices)
    metadata: OutpostMetadata | None = None

    def to_element(self) -> ET.Element:
        element = ET.Element("domain", type=self.type)
        _sub(element, "name", self.name)
        if self.uuid:
            _sub(element, "uuid", self.uuid)
        if self.metadata is not None:
            _sub(element, "metadata").append(self.metadata.to_element())
        element.append(self.memory.to_element())
        element.append(self.vcpu.to_element())
        element.append(self.os.to_element())
        element.append(self.features.to_element())
        if self.cpu is not None:
            element.append(self.cpu.to_element())
        for tag in ("on_poweroff", "on_reboot", "on_crash"):
            if value := getattr(self, tag):
                _sub(element, tag, value)
        element.append(self.devices.to_element())
        return element

    def to_xml(self) -> str:
        element = self.to_element()
        ET.indent(element)
        return ET.tostring(element, encoding="unicode") + "\n"

    @classmethod
    def from_element(cls, element: ET.Element) -> Domain:
        if element.tag != "domain":
            raise ValueError(f"expected <domain>, got <{element.tag}>")
        parts = {tag: element.find(tag) for tag in ("memory", "vcpu", "os")}
        missing = [tag for tag, part in parts.items() if part is None]
        if missing:
            raise ValueError(f"<domain> lacks {', '.join(missing)}")
        features = element.find("features")
        cpu = element.find("cpu")
        devices = element.find("devices")
        meta = element.find(f"metadata/{OutpostMetadata.TAG}")
        return cls(
            type=element.get("type", ""),
            name=_text(element.find("name")),
            uuid=_text(element.find("uuid")),
            memory=Memory.from_element(parts["memory"]),  # type: ignore[arg-type]
            vcpu=Vcpu.from_element(parts["vcpu"]),  # type: ignore[arg-type]
            os=OsKernelBoot.from_element(parts["os"]),  # type: ignore[arg-type]
            features=Features.from_element(features) if features is not None else Features(),
            cpu=Cpu.from_element(cpu) if cpu is not None else None,
            on_poweroff=_text(element.find("on_poweroff")),
            on_reboot=_text(element.find("on_reboot")),
            on_crash=_text(element.find("on_crash")),
            devices=Devices.from_element(devices) if devices is not None else Devices(),
            metadata=OutpostMetadata.from_element(meta) if meta is not None else None,
        )

    @classmethod
    def from_xml(cls, text: str) -> Domain:
        """Read the modelled parts of a domain XML (e.g. ``virsh dumpxml``)."""
        return cls.from_element(ET.fromstring(text))
