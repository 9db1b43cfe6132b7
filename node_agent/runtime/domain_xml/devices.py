"""Device elements other than disks and host devices, and the ``<devices>`` container."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from node_agent.runtime.domain_xml._xml import attr, sub, text
from node_agent.runtime.domain_xml.disks import Disk
from node_agent.runtime.domain_xml.hostdev import HostdevPci, HostdevUsb

__all__ = ["Console", "Controller", "Devices", "Interface", "MemBalloon", "Serial", "Tpm"]


@dataclass(frozen=True)
class Serial:
    """``<serial type='pty|file'>``: a serial port.

    ``type='file'`` writes the port's output into ``source_path`` (``append`` keeps what
    earlier runs wrote) and connects nothing else; ``type='pty'`` gives a host pty whose
    output virtlogd also copies into ``log_file``.
    """

    log_file: str = ""
    append: bool = False
    port: int = 0
    type: str = "pty"
    source_path: str = ""

    def to_element(self) -> ET.Element:
        element = ET.Element("serial", type=self.type)
        on_off = "on" if self.append else "off"
        if self.type == "file":
            sub(element, "source", path=self.source_path, append=on_off)
        if self.log_file:
            sub(element, "log", file=self.log_file, append=on_off)
        sub(element, "target", port=str(self.port))
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Serial:
        kind = element.get("type", "pty")
        log, source = element.find("log"), element.find("source")
        target = element.find("target")
        appended = log if log is not None else source if kind == "file" else None
        return cls(
            log_file=attr(log, "file"),
            append=attr(appended, "append") == "on",
            port=int(attr(target, "port", "0")),
            type=kind,
            source_path=attr(source, "path") if kind == "file" else "",
        )


@dataclass(frozen=True)
class Console:
    """``<console type='pty'>`` attached to a serial port (``virsh console``)."""

    target_type: str = "serial"
    port: int = 0

    def to_element(self) -> ET.Element:
        element = ET.Element("console", type="pty")
        sub(element, "target", type=self.target_type, port=str(self.port))
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
            sub(element, "mac", address=self.mac)
        sub(element, "source", bridge=self.source_bridge)
        if self.target_dev:
            sub(element, "target", dev=self.target_dev)
        if self.model:
            sub(element, "model", type=self.model)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Interface:
        return cls(
            source_bridge=attr(element.find("source"), "bridge"),
            mac=attr(element.find("mac"), "address"),
            model=attr(element.find("model"), "type"),
            target_dev=attr(element.find("target"), "dev"),
        )


@dataclass(frozen=True)
class Tpm:
    """``<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>``.

    With the ``emulator`` backend libvirt runs one swtpm per domain and keeps its state
    until the domain is undefined.  The guest only finds the TPM through ACPI, so the
    domain needs ``<features><acpi/>``.
    """

    model: str = "tpm-crb"
    backend_type: str = "emulator"
    version: str = "2.0"

    def to_element(self) -> ET.Element:
        element = ET.Element("tpm", model=self.model)
        sub(element, "backend", type=self.backend_type, version=self.version)
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Tpm:
        backend = element.find("backend")
        return cls(
            model=element.get("model", ""),
            backend_type=attr(backend, "type"),
            version=attr(backend, "version"),
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


Hostdev = HostdevUsb | HostdevPci


def _hostdev(element: ET.Element) -> Hostdev | None:
    if element.get("type") == "usb":
        return HostdevUsb.from_element(element)
    if element.get("type") == "pci":
        return HostdevPci.from_element(element)
    return None


@dataclass(frozen=True)
class Devices:
    """``<devices>``: the element types above, in libvirt's order."""

    emulator: str = ""
    disks: tuple[Disk, ...] = ()
    controllers: tuple[Controller, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    serials: tuple[Serial, ...] = ()
    consoles: tuple[Console, ...] = ()
    hostdevs: tuple[Hostdev, ...] = ()
    tpms: tuple[Tpm, ...] = ()
    memballoon: MemBalloon | None = None

    def to_element(self) -> ET.Element:
        element = ET.Element("devices")
        if self.emulator:
            sub(element, "emulator", self.emulator)
        children = (
            *self.disks,
            *self.controllers,
            *self.interfaces,
            *self.serials,
            *self.consoles,
            *self.tpms,
            *self.hostdevs,
        )
        element.extend(child.to_element() for child in children)
        if self.memballoon is not None:
            element.append(self.memballoon.to_element())
        return element

    @classmethod
    def from_element(cls, element: ET.Element) -> Devices:
        balloon = element.find("memballoon")
        hostdevs = (_hostdev(e) for e in element.findall("hostdev"))
        return cls(
            emulator=text(element.find("emulator")),
            disks=tuple(
                Disk.from_element(e) for e in element.findall("disk") if e.get("type") == "file"
            ),
            controllers=tuple(Controller.from_element(e) for e in element.findall("controller")),
            interfaces=tuple(
                Interface.from_element(e)
                for e in element.findall("interface")
                if e.get("type") == "bridge"
            ),
            serials=tuple(Serial.from_element(e) for e in element.findall("serial")),
            consoles=tuple(
                Console.from_element(e)
                for e in element.findall("console")
                if e.get("type", "pty") == "pty"
            ),
            hostdevs=tuple(h for h in hostdevs if h is not None),
            tpms=tuple(Tpm.from_element(e) for e in element.findall("tpm")),
            memballoon=MemBalloon.from_element(balloon) if balloon is not None else None,
        )
