"""vm_policy for disk images and devices on request: what it refuses, and what it builds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from node_agent.runtime.base import DiskAttachment, PermanentError, WorkloadSpec
from node_agent.runtime.domain_xml import HostdevPci, OsDiskBoot, Tpm
from node_agent.runtime.vm_policy import build_domain, prepare_domain

WORK = Path("/var/lib/outpost/apps/a")
ROOT = DiskAttachment(
    path=WORK / "root.qcow2", format="qcow2", backing=Path("/img/blob"), backing_format="raw"
)
SPEC = WorkloadSpec(
    app_uuid="6a1c0d52-0000-4000-8000-000000000001",
    name="cam",
    node_uuid="0b7e4c11-0000-4000-8000-000000000002",
    image_path=Path("/img/blob"),
    image_sha256="ab" * 32,
    image_format="raw",
    work_dir=WORK,
    root_disk=ROOT,
)


def test_a_disk_image_boots_from_its_overlay_first() -> None:
    domain = prepare_domain(SPEC, "tcg")
    assert domain.os == OsDiskBoot(boot_devs=(), machine="pc")
    (root,) = domain.devices.disks
    assert (root.source, root.target_dev, root.boot_order) == (str(ROOT.path), "vda", 1)
    assert root.backing is not None and (root.backing.source, root.backing.format) == (
        "/img/blob",
        "raw",
    )


def test_a_disk_image_without_a_prepared_overlay_is_refused() -> None:
    with pytest.raises(PermanentError, match="root overlay"):
        prepare_domain(replace(SPEC, root_disk=None), "tcg")


def test_data_disks_follow_the_root_disk_and_carry_their_name_as_serial() -> None:
    data = (DiskAttachment(path=WORK / "data-db.qcow2", name="db"),)
    disks = build_domain(replace(SPEC, data_disks=data), "tcg").devices.disks
    assert [(d.target_dev, d.serial, d.boot_order) for d in disks] == [
        ("vda", "", 1),
        ("vdb", "db", None),
    ]


def test_pci_functions_become_managed_hostdevs_and_bad_addresses_are_refused() -> None:
    domain = build_domain(replace(SPEC, pci_devices=("0000:65:00.0", "0000:65:00.1")), "tcg")
    assert domain.devices.hostdevs == (
        HostdevPci(0, 0x65, 0, 0, managed=True),
        HostdevPci(0, 0x65, 0, 1, managed=True),
    )
    for bad in (("65:00.0",), ("0000:65:00.0", "0000:65:00.0"), ("0000:65:20.0",)):
        with pytest.raises(PermanentError):
            build_domain(replace(SPEC, pci_devices=bad), "tcg")


def test_a_vtpm_comes_with_acpi_and_only_on_request() -> None:
    with_tpm = build_domain(replace(SPEC, vtpm=True), "tcg")
    assert with_tpm.devices.tpms == (Tpm(model="tpm-crb", backend_type="emulator", version="2.0"),)
    assert with_tpm.features.acpi
    assert build_domain(SPEC, "tcg").devices.tpms == ()


@pytest.mark.parametrize(("accel", "mode"), [("tcg", "maximum"), ("kvm", "host-model")])
def test_cpu_model_follows_the_accelerator(accel: str, mode: str) -> None:
    cpu = build_domain(SPEC, accel).cpu
    assert cpu is not None and cpu.mode == mode
