"""domain_xml: each element to XML and back, metadata round trips, reading libvirt's output."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from node_agent.runtime.domain_xml import (
    OUTPOST_NS,
    Console,
    Controller,
    Cpu,
    Devices,
    Disk,
    Domain,
    Features,
    MemBalloon,
    Memory,
    OsKernelBoot,
    OutpostMetadata,
    Serial,
    Vcpu,
)

META = OutpostMetadata(
    app_uuid="6a1c0d52-0000-4000-8000-000000000001",
    node_uuid="0b7e4c11-0000-4000-8000-000000000002",
    image_sha256="ab" * 32,
    app_name='camera <edge> & "friends"',
)


def canonical(xml: str) -> str:
    return ET.canonicalize(xml, strip_text=True)


def full_domain() -> Domain:
    return Domain(
        type="qemu",
        name="outpost-0b7e4c11-6a1c0d52",
        uuid="3f2a3d7e-1111-4222-8333-444455556666",
        memory=Memory(128),
        vcpu=Vcpu(2),
        os=OsKernelBoot(kernel="/w/kernel", initrd="/w/initrd", cmdline="console=ttyS0 quiet"),
        features=Features(acpi=True),
        cpu=Cpu(mode="host-model"),
        on_poweroff="destroy",
        on_reboot="restart",
        on_crash="destroy",
        devices=Devices(
            emulator="/usr/bin/qemu-system-x86_64",
            disks=(Disk(source="/w/data.qcow2", target_dev="vda", driver_type="qcow2"),),
            controllers=(Controller(type="usb", model="none"),),
            serials=(Serial(log_file="/w/console.log", append=True),),
            consoles=(Console(),),
            memballoon=MemBalloon(),
        ),
        metadata=META,
    )


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        (Memory(64), "<memory unit='MiB'>64</memory>"),
        (Vcpu(2), "<vcpu>2</vcpu>"),
        (Cpu(mode="custom", model="qemu64"), "<cpu mode='custom'><model>qemu64</model></cpu>"),
        (Features(acpi=True), "<features><acpi/></features>"),
        (Features(), "<features/>"),
        (Controller(type="usb", model="none"), "<controller type='usb' model='none'/>"),
        (MemBalloon(), "<memballoon model='none'/>"),
        (Console(), "<console type='pty'><target type='serial' port='0'/></console>"),
        (
            Serial(log_file="/w/console.log"),
            "<serial type='pty'><log file='/w/console.log' append='off'/>"
            "<target port='0'/></serial>",
        ),
        (
            OsKernelBoot(kernel="/k", initrd="/i", cmdline="a=b", machine="pc"),
            "<os><type arch='x86_64' machine='pc'>hvm</type><kernel>/k</kernel>"
            "<initrd>/i</initrd><cmdline>a=b</cmdline></os>",
        ),
        (
            Disk(source="/d.img", target_dev="vdb", readonly=True),
            "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            "<source file='/d.img'/><target dev='vdb' bus='virtio'/><readonly/></disk>",
        ),
    ],
)
def test_element_to_xml_and_back(element: object, expected: str) -> None:
    produced = ET.tostring(element.to_element(), encoding="unicode")  # type: ignore[attr-defined]
    assert canonical(produced) == canonical(expected)
    parsed = type(element).from_element(ET.fromstring(expected))  # type: ignore[attr-defined]
    assert parsed == element


def test_domain_round_trip() -> None:
    domain = full_domain()
    assert Domain.from_xml(domain.to_xml()) == domain


def test_metadata_round_trip_and_escaping() -> None:
    text = META.to_xml()
    assert OUTPOST_NS in text and "&lt;edge&gt;" in text  # escaped, not formatted in
    assert OutpostMetadata.from_xml(text) == META
    assert OutpostMetadata.from_xml(full_domain().to_xml()) == META


def test_metadata_element_is_namespaced_inside_metadata() -> None:
    root = ET.fromstring(full_domain().to_xml())
    app = root.find(f"metadata/{{{OUTPOST_NS}}}app")
    assert app is not None
    assert app.attrib == {
        "app-uuid": META.app_uuid,
        "node-uuid": META.node_uuid,
        "image-sha256": META.image_sha256,
        "app-name": META.app_name,
    }


def test_metadata_from_libvirt_metadata_api() -> None:
    # virDomainGetMetadata drops the namespace declaration that sat on <metadata>
    bare = f'<app app-uuid="a" node-uuid="n" image-sha256="{"0" * 64}" app-name="x"/>'
    assert OutpostMetadata.from_metadata_api(bare) == OutpostMetadata("a", "n", "0" * 64, "x")
    assert OutpostMetadata.from_metadata_api(META.to_xml()) == META


@pytest.mark.parametrize(
    "text",
    [
        "<app xmlns='urn:other' app-uuid='a' node-uuid='n' image-sha256='s'/>",
        f"<app xmlns='{OUTPOST_NS}' app-uuid='a' image-sha256='s'/>",
        "<domain type='qemu'><name>x</name><metadata/></domain>",
    ],
)
def test_metadata_rejects_foreign_or_incomplete(text: str) -> None:
    with pytest.raises(ValueError):
        OutpostMetadata.from_xml(text)


LIBVIRT_DUMPXML = f"""
<domain type='qemu' id='5'>
  <name>outpost-0b7e4c11-6a1c0d52</name>
  <uuid>969c29ce-5130-43ad-8c8d-c27803f8b9c7</uuid>
  <metadata>
    <outpost:app xmlns:outpost="{OUTPOST_NS}" app-uuid="{META.app_uuid}"
      node-uuid="{META.node_uuid}" image-sha256="{META.image_sha256}" app-name="cam"/>
  </metadata>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <resource><partition>/machine</partition></resource>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/w/kernel-bundle/kernel</kernel>
    <initrd>/w/kernel-bundle/initrd</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
    <boot dev='hd'/>
  </os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact' check='full'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' index='0' model='none'><alias name='usb'/></controller>
    <controller type='pci' index='0' model='pci-root'><alias name='pci.0'/></controller>
    <serial type='pty'>
      <source path='/dev/pts/0'/>
      <log file='/w/console.log' append='on'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
      <alias name='serial0'/>
    </serial>
    <console type='pty' tty='/dev/pts/0'>
      <source path='/dev/pts/0'/>
      <log file='/w/console.log' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <input type='mouse' bus='ps2'/>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'/>
</domain>
"""


def test_from_xml_reads_libvirt_output() -> None:
    domain = Domain.from_xml(LIBVIRT_DUMPXML)
    assert domain.type == "qemu"
    assert domain.memory == Memory(128)  # KiB converted
    assert domain.vcpu == Vcpu(1)
    assert domain.os.kernel == "/w/kernel-bundle/kernel"
    assert domain.os.machine == "pc-i440fx-7.2"
    assert domain.features == Features(acpi=True)
    assert domain.cpu == Cpu(mode="custom", model="qemu64")
    assert domain.devices.controllers == (
        Controller(type="usb", model="none", index=0),
        Controller(type="pci", model="pci-root", index=0),
    )
    assert domain.devices.serials == (Serial(log_file="/w/console.log", append=True),)
    assert domain.devices.consoles == (Console(),)
    assert domain.devices.memballoon == MemBalloon("none")
    assert domain.metadata is not None and domain.metadata.app_uuid == META.app_uuid


def test_from_xml_rejects_non_domain() -> None:
    with pytest.raises(ValueError):
        Domain.from_xml("<network><name>x</name></network>")
    with pytest.raises(ValueError, match="lacks"):
        Domain.from_xml("<domain type='qemu'><name>x</name></domain>")
