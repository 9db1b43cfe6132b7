"""The whole ``<domain>`` document and Outpost's element in its ``<metadata>``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import ClassVar

from node_agent.runtime.domain_xml._xml import OUTPOST_NS, sub, text
from node_agent.runtime.domain_xml.devices import Devices
from node_agent.runtime.domain_xml.system import (
    Cpu,
    Features,
    Memory,
    Os,
    Vcpu,
    os_from_element,
)

__all__ = ["Domain", "DomainXmlError", "OutpostMetadata", "parse_xml"]


class DomainXmlError(ValueError):
    """libvirt gave XML this model cannot read (not XML, a missing attribute, a number
    that is not one …); a ValueError, as the runtime's callers expect."""


def parse_xml(text: str, what: str) -> ET.Element:
    """``text`` as an element; DomainXmlError naming ``what`` when it is not XML."""
    try:
        return ET.fromstring(text)
    except (ET.ParseError, TypeError) as exc:
        raise DomainXmlError(f"{what}: not XML ({exc})") from exc


@dataclass(frozen=True)
class OutpostMetadata:
    """``<outpost:app …/>`` in the domain's ``<metadata>``: which app and node own the domain."""

    app_uuid: str
    node_uuid: str
    image_sha256: str
    app_name: str = ""
    spec_sha256: str = ""
    """``WorkloadSpec.digest`` of the spec the domain was defined from ("" before it was
    recorded: such a domain counts as made from another spec)."""

    TAG: ClassVar[str] = f"{{{OUTPOST_NS}}}app"

    def to_element(self) -> ET.Element:
        return ET.Element(
            self.TAG,
            {
                "app-uuid": self.app_uuid,
                "node-uuid": self.node_uuid,
                "image-sha256": self.image_sha256,
                "app-name": self.app_name,
                **({"spec-sha256": self.spec_sha256} if self.spec_sha256 else {}),
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
                spec_sha256=element.get("spec-sha256", ""),
            )
        except KeyError as exc:
            raise ValueError(f"<{cls.TAG}> lacks attribute {exc}") from None

    @classmethod
    def from_xml(cls, text: str) -> OutpostMetadata:
        """Parse the element alone or find it in a whole domain XML."""
        root = parse_xml(text, "domain metadata")
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
        root = parse_xml(text, "domain metadata")
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
    os: Os
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
        sub(element, "name", self.name)
        if self.uuid:
            sub(element, "uuid", self.uuid)
        if self.metadata is not None:
            sub(element, "metadata").append(self.metadata.to_element())
        element.append(self.memory.to_element())
        element.append(self.vcpu.to_element())
        element.append(self.os.to_element())
        element.append(self.features.to_element())
        if self.cpu is not None:
            element.append(self.cpu.to_element())
        for tag in ("on_poweroff", "on_reboot", "on_crash"):
            if value := getattr(self, tag):
                sub(element, tag, value)
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
        memory, vcpu, boot = (element.find(tag) for tag in ("memory", "vcpu", "os"))
        parts = {"memory": memory, "vcpu": vcpu, "os": boot}
        missing = [tag for tag, part in parts.items() if part is None]
        if memory is None or vcpu is None or boot is None:
            raise ValueError(f"<domain> lacks {', '.join(missing)}")
        features = element.find("features")
        cpu = element.find("cpu")
        devices = element.find("devices")
        meta = element.find(f"metadata/{OutpostMetadata.TAG}")
        return cls(
            type=element.get("type", ""),
            name=text(element.find("name")),
            uuid=text(element.find("uuid")),
            memory=Memory.from_element(memory),
            vcpu=Vcpu.from_element(vcpu),
            os=os_from_element(boot),
            features=Features.from_element(features) if features is not None else Features(),
            cpu=Cpu.from_element(cpu) if cpu is not None else None,
            on_poweroff=text(element.find("on_poweroff")),
            on_reboot=text(element.find("on_reboot")),
            on_crash=text(element.find("on_crash")),
            devices=Devices.from_element(devices) if devices is not None else Devices(),
            metadata=OutpostMetadata.from_element(meta) if meta is not None else None,
        )

    @classmethod
    def from_xml(cls, text: str) -> Domain:
        """Read the modelled parts of a domain XML (e.g. ``virsh dumpxml``)."""
        root = parse_xml(text, "domain XML")
        try:
            return cls.from_element(root)
        except (KeyError, AttributeError, TypeError) as exc:
            raise DomainXmlError(f"domain XML: unexpected shape ({exc!r})") from exc
