"""From a fabricated sysfs tree to the domain XML: the adapters resolved by the agent's
passthrough check become one managed ``<hostdev type='pci'>`` per function of the group.

Compared with ``tests/unit/golden/passthrough/<name>.xml`` (regenerate with
``OUTPOST_REGEN_GOLDEN=1`` and review the diff) and defined on libvirt's test driver.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from node_agent.passthrough import resolve_adapters
from node_agent.runtime.base import DiskAttachment, WorkloadSpec
from node_agent.runtime.domain_xml import Domain
from node_agent.runtime.vm_policy import build_domain
from protocol.desired_state import Adapter

SYSFS = Path(__file__).resolve().parents[1] / "data" / "sysfs"
GOLDEN_DIR = Path(__file__).parent / "golden" / "passthrough"
REGEN = os.environ.get("OUTPOST_REGEN_GOLDEN") == "1"
WORK = Path("/var/lib/outpost/apps/6a1c0d52-0000-4000-8000-0000000000a1")
BLOB = Path("/var/lib/outpost/images/sha256/" + "cd" * 32)
BASE = WorkloadSpec(
    app_uuid="6a1c0d52-0000-4000-8000-0000000000a1",
    name="inference",
    node_uuid="0b7e4c11-0000-4000-8000-0000000000a2",
    image_path=BLOB,
    image_sha256="cd" * 32,
    image_format="qcow2",
    work_dir=WORK,
    vcpus=2,
    memory_mib=2048,
    root_disk=DiskAttachment(
        path=WORK / "root.qcow2", format="qcow2", backing=BLOB, backing_format="qcow2"
    ),
)
CASES = {
    "nvidia_gpu_and_audio": ("nvidia", Adapter(kind="gpu", match="10de:1eb8")),
    "intel_igpu": ("intel", Adapter(kind="gpu", match="0000:00:02.0")),
}


def _domain(name: str) -> Domain:
    tree, adapter = CASES[name]
    functions = resolve_adapters([adapter], SYSFS / tree)
    return build_domain(replace(BASE, pci_devices=functions), "tcg", None)


def _canonical(xml: str) -> str:
    return ET.canonicalize(xml, strip_text=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_passthrough_domain_matches_its_golden_file(name: str) -> None:
    xml = _domain(name).to_xml()
    golden = GOLDEN_DIR / f"{name}.xml"
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(xml)
    assert golden.is_file(), f"{golden} missing: run with OUTPOST_REGEN_GOLDEN=1"
    assert _canonical(xml) == _canonical(golden.read_text())


def test_the_nvidia_gpu_goes_with_its_audio_function_and_not_its_root_port() -> None:
    root = ET.parse(GOLDEN_DIR / "nvidia_gpu_and_audio.xml").getroot()
    hostdevs = [
        (h.get("mode"), h.get("type"), h.get("managed"), h.find("source/address").attrib)  # type: ignore[union-attr]
        for h in root.iter("hostdev")
    ]
    pci = {"domain": "0x0000", "bus": "0x01", "slot": "0x00"}
    assert hostdevs == [
        ("subsystem", "pci", "yes", {**pci, "function": "0x0"}),
        ("subsystem", "pci", "yes", {**pci, "function": "0x1"}),
    ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_passthrough_domain_is_accepted_by_libvirt_test_driver(name: str) -> None:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("test:///default")
    try:
        xml = (GOLDEN_DIR / f"{name}.xml").read_text()
        dom = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        defined = Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert defined.devices.hostdevs == Domain.from_xml(xml).devices.hostdevs
        dom.undefine()
    finally:
        conn.close()
