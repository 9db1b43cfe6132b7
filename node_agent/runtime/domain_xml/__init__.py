"""Typed model of the libvirt domain XML Outpost uses, and its conversion to and from XML.

One small frozen dataclass per XML element, each with ``to_element()`` (build an
:class:`xml.etree.ElementTree.Element`) and ``from_element()`` (read one back, ignoring
whatever libvirt added that the model does not know).  :class:`Domain` adds
``to_xml()``/``from_xml()`` for whole documents.

This package holds NO policy: it does not decide which devices a VM gets, which
defaults are safe or how files are laid out; it only converts objects to XML and
back (as nova's ``libvirt/config.py``).  The policy that turns a workload spec
into a :class:`Domain` lives in :mod:`node_agent.runtime.vm_policy`.

Modules: :mod:`.system` (memory, vCPUs, CPU, ``<os>``, features), :mod:`.disks`
(``<disk>``, ``<backingStore>``), :mod:`.hostdev` (USB and PCI passthrough),
:mod:`.devices` (serial, console, controllers, NICs, TPM, balloon, ``<devices>``),
:mod:`.domain` (``<domain>`` and Outpost's metadata element).
"""

from node_agent.runtime.domain_xml._xml import OUTPOST_NS
from node_agent.runtime.domain_xml.devices import (
    Console,
    Controller,
    Devices,
    Interface,
    MemBalloon,
    Serial,
    Tpm,
)
from node_agent.runtime.domain_xml.disks import BackingStore, Disk
from node_agent.runtime.domain_xml.domain import Domain, OutpostMetadata
from node_agent.runtime.domain_xml.hostdev import HostdevPci, HostdevUsb
from node_agent.runtime.domain_xml.system import (
    Cpu,
    Features,
    Memory,
    Os,
    OsDiskBoot,
    OsKernelBoot,
    Vcpu,
)

__all__ = [
    "OUTPOST_NS",
    "BackingStore",
    "Console",
    "Controller",
    "Cpu",
    "Devices",
    "Disk",
    "Domain",
    "Features",
    "HostdevPci",
    "HostdevUsb",
    "Interface",
    "MemBalloon",
    "Memory",
    "Os",
    "OsDiskBoot",
    "OsKernelBoot",
    "OutpostMetadata",
    "Serial",
    "Tpm",
    "Vcpu",
]
