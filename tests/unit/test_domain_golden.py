"""Golden domain XML, one file per feature, each also defined on libvirt's test driver.

The XML vm_policy builds for each feature must equal ``tests/unit/golden/domain/<name>.xml``
(compared canonically), read back into the same objects, and be accepted (schema-validated)
by ``test:///default``.  Regenerate the files after an intended change with
``OUTPOST_REGEN_GOLDEN=1 pytest tests/unit/test_domain_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from node_agent.runtime.base import DiskAttachment, NetAttachment, WorkloadSpec
from node_agent.runtime.domain_xml import Domain
from node_agent.runtime.vm_policy import BUNDLE_DIR, KernelBundleFiles, build_domain

GOLDEN_DIR = Path(__file__).parent / "golden" / "domain"
REGEN = os.environ.get("OUTPOST_REGEN_GOLDEN") == "1"
WORK = Path("/var/lib/outpost/apps/6a1c0d52-0000-4000-8000-000000000001")
BLOB = Path("/var/lib/outpost/images/sha256/" + "ab" * 32)
BASE = WorkloadSpec(
    app_uuid="6a1c0d52-0000-4000-8000-000000000001",
    name="camera",
    node_uuid="0b7e4c11-0000-4000-8000-000000000002",
    image_path=BLOB,
    image_sha256="ab" * 32,
    image_format="kernel-bundle",
    work_dir=WORK,
    vcpus=1,
    memory_mib=128,
)
FILES = KernelBundleFiles(
    directory=WORK / BUNDLE_DIR,
    kernel=WORK / BUNDLE_DIR / "kernel",
    initrd=WORK / BUNDLE_DIR / "initrd",
    cmdline="console=ttyS0 quiet",
)


def _disk_spec(fmt: str, **changes: object) -> WorkloadSpec:
    root = DiskAttachment(
        path=WORK / "root.qcow2", format="qcow2", backing=BLOB, backing_format=fmt
    )
    return replace(BASE, image_format=fmt, root_disk=root, **changes)  # type: ignore[arg-type]


DATA = (
    DiskAttachment(path=WORK / "data-db.qcow2", name="db"),
    DiskAttachment(path=WORK / "data-scratch.qcow2", name="scratch"),
)
NET = NetAttachment(
    network="cams",
    bridge="opb-cams",
    mac="52:54:00:12:34:56",
    ip="10.40.0.10",
    prefix=24,
    gateway="10.40.0.1",
    host_ifname="opv-6a1c0d52-0",
)

CASES: dict[str, tuple[WorkloadSpec, str, KernelBundleFiles | None]] = {
    "kernel_bundle": (BASE, "tcg", FILES),
    "kernel_bundle_kvm": (replace(BASE, vcpus=2, memory_mib=256), "kvm", FILES),
    "qcow2_overlay": (_disk_spec("qcow2"), "tcg", None),
    "raw_overlay": (_disk_spec("raw"), "tcg", None),
    "data_disks": (_disk_spec("qcow2", data_disks=DATA), "tcg", None),
    "vtpm": (_disk_spec("qcow2", vtpm=True), "tcg", None),
    "gpu_with_audio_function": (
        _disk_spec("qcow2", pci_devices=("0000:01:00.0", "0000:01:00.1")),
        "tcg",
        None,
    ),
    "usb_hostdev": (replace(BASE, usb_devices=("0bda:8153",)), "tcg", FILES),
    "network_interface": (replace(BASE, networks=(NET,)), "tcg", FILES),
}


def canonical(xml: str) -> str:
    return ET.canonicalize(xml, strip_text=True)


@pytest.fixture(scope="module")
def test_driver() -> libvirt.virConnect:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_domain_xml_matches_its_golden_file(name: str) -> None:
    spec, accel, files = CASES[name]
    xml = build_domain(spec, accel, files).to_xml()
    golden = GOLDEN_DIR / f"{name}.xml"
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(xml)
    assert golden.is_file(), f"{golden} missing: run with OUTPOST_REGEN_GOLDEN=1"
    assert canonical(xml) == canonical(golden.read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_file_reads_back_into_the_same_domain(name: str) -> None:
    spec, accel, files = CASES[name]
    golden = (GOLDEN_DIR / f"{name}.xml").read_text()
    assert Domain.from_xml(golden) == build_domain(spec, accel, files)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_domain_is_accepted_by_libvirt_test_driver(
    name: str, test_driver: libvirt.virConnect
) -> None:
    golden = (GOLDEN_DIR / f"{name}.xml").read_text()
    dom = test_driver.defineXMLFlags(golden, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    try:
        defined = Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        expected = Domain.from_xml(golden)
        assert defined.devices.disks == expected.devices.disks
        assert defined.devices.hostdevs == expected.devices.hostdevs
        assert defined.devices.tpms == expected.devices.tpms
        assert defined.os == replace(expected.os, machine=defined.os.machine)
    finally:
        dom.undefine()


def test_gpu_golden_passes_every_function_managed() -> None:
    root = ET.parse(GOLDEN_DIR / "gpu_with_audio_function.xml").getroot()
    addresses = [
        (h.get("managed"), h.find("source/address").attrib)  # type: ignore[union-attr]
        for h in root.iter("hostdev")
    ]
    assert addresses == [
        ("yes", {"domain": "0x0000", "bus": "0x01", "slot": "0x00", "function": "0x0"}),
        ("yes", {"domain": "0x0000", "bus": "0x01", "slot": "0x00", "function": "0x1"}),
    ]
