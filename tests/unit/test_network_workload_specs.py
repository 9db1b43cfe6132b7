"""Network and USB attachments as the runtimes render them (domain XML, podman argv)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from node_agent.runtime.base import NetAttachment, PermanentError, WorkloadSpec
from node_agent.runtime.domain_xml import Domain, Interface
from node_agent.runtime.podman_args import run_argv
from node_agent.runtime.vm_policy import KernelBundleFiles, build_domain

NODE = str(uuid.UUID(int=31))
LAN = NetAttachment(
    "lan", "ob-1234567890", "52:54:00:aa:bb:cc", "10.5.0.2", 24, "10.5.0.1", "ov-00000000-0"
)
DMZ = NetAttachment(
    "dmz", "ob-abcdefabcd", "52:54:00:dd:ee:ff", "10.6.0.2", 24, "10.6.0.1", "ov-00000000-1"
)
SPEC = WorkloadSpec(
    app_uuid=str(uuid.UUID(int=32)),
    name="app",
    node_uuid=NODE,
    image_path=Path("/images/x"),
    image_sha256="a" * 64,
    image_format="kernel-bundle",
    work_dir=Path("/tmp/outpost-work/app"),
)
FILES = KernelBundleFiles(Path("/b"), Path("/b/kernel"), Path("/b/initrd"), "console=ttyS0")


def _devices(spec: WorkloadSpec) -> ET.Element:
    root = ET.fromstring(build_domain(spec, "tcg", FILES).to_xml())
    devices = root.find("devices")
    assert devices is not None
    return devices


def test_a_vm_without_networks_has_no_interface():
    assert _devices(SPEC).findall("interface") == []


def test_a_vm_gets_one_virtio_nic_per_network_on_its_bridge():
    nics = _devices(replace(SPEC, networks=(LAN, DMZ))).findall("interface")
    got = ET.canonicalize(ET.tostring(nics[0], encoding="unicode"), strip_text=True)
    assert got == ET.canonicalize(
        '<interface type="bridge"><mac address="52:54:00:aa:bb:cc" />'
        '<source bridge="ob-1234567890" /><target dev="ov-00000000-0" />'
        '<model type="virtio" /></interface>',
        strip_text=True,
    )
    assert [n.find("source").get("bridge") for n in nics] == [LAN.bridge, DMZ.bridge]  # type: ignore[union-attr]


def test_an_interface_reads_back_from_xml():
    domain = build_domain(replace(SPEC, networks=(LAN,)), "tcg", FILES)
    assert Domain.from_xml(domain.to_xml()).devices.interfaces == (
        Interface("ob-1234567890", "52:54:00:aa:bb:cc", "virtio", "ov-00000000-0"),
    )


def test_a_vm_without_usb_devices_has_no_usb_bus():
    (usb,) = _devices(SPEC).findall("controller[@type='usb']")
    assert usb.get("model") == "none" and _devices(SPEC).findall("hostdev") == []


def test_a_usb_device_is_passed_through_by_vendor_and_product():
    devices = _devices(replace(SPEC, usb_devices=("046d:0825",)))
    (usb,) = devices.findall("controller[@type='usb']")
    (hostdev,) = devices.findall("hostdev")
    assert usb.get("model") == "qemu-xhci"
    assert (hostdev.get("type"), hostdev.find("source/vendor").get("id")) == ("usb", "0x046d")  # type: ignore[union-attr]
    assert hostdev.find("source/product").get("id") == "0x0825"  # type: ignore[union-attr]


def test_an_invalid_usb_id_is_refused():
    with pytest.raises(PermanentError, match="invalid USB id"):
        build_domain(replace(SPEC, usb_devices=("046d:08zz",)), "tcg", FILES)


def test_a_domain_with_a_nic_and_a_usb_device_passes_libvirt_validation():
    spec = replace(SPEC, networks=(LAN,), usb_devices=("046d:0825",))
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXMLFlags(
            build_domain(spec, "tcg", FILES).to_xml(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE
        )
        assert "ob-1234567890" in dom.XMLDesc(0)
        dom.undefine()
    finally:
        conn.close()


def _container(**kw: object) -> WorkloadSpec:
    return replace(SPEC, image_format="oci-archive", **kw)  # type: ignore[arg-type]


def test_a_container_without_networks_runs_with_network_none():
    argv = run_argv(_container(), NODE)
    assert argv[argv.index("--network") + 1] == "none" and "--dns" not in argv


def test_a_container_on_networks_joins_its_prepared_namespace():
    argv = run_argv(_container(networks=(LAN, DMZ), netns_path="/run/netns/outpost-x"), NODE)
    assert argv[argv.index("--network") + 1] == "ns:/run/netns/outpost-x"
    assert argv[argv.index("--dns") + 1] == "10.5.0.1"
    assert "--publish" not in argv and "-p" not in argv


def test_a_container_on_networks_without_a_namespace_is_refused():
    with pytest.raises(PermanentError, match="no usable network namespace path"):
        run_argv(_container(networks=(LAN,)), NODE)
