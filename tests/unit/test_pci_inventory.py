"""The PCI inventory read from fabricated sysfs trees (real machines' layouts)."""

from __future__ import annotations

import shutil
from pathlib import Path

from node_agent.inventory import node_inventory
from node_agent.pci_inventory import read_pci_inventory

SYSFS = Path(__file__).resolve().parents[1] / "data" / "sysfs"


def test_a_gpu_its_audio_function_and_root_port_share_one_iommu_group():
    inv = read_pci_inventory(SYSFS / "nvidia")
    gpu = inv.devices["0000:01:00.0"]
    assert (gpu.vendor, gpu.device, gpu.class_code, gpu.driver) == (
        "10de",
        "1eb8",
        "030000",
        "nvidia",
    )
    assert gpu.is_gpu and not gpu.is_bridge
    assert gpu.iommu_group == 1
    assert gpu.group_members == ("0000:00:01.0", "0000:01:00.0", "0000:01:00.1")
    assert inv.devices["0000:00:01.0"].is_bridge
    assert not inv.devices["0000:01:00.1"].is_gpu


def test_an_intel_igpu_is_alone_in_its_group():
    inv = read_pci_inventory(SYSFS / "intel")
    igpu = inv.devices["0000:00:02.0"]
    assert igpu.is_gpu and igpu.driver == "i915"
    assert igpu.group_members == ("0000:00:02.0",)


def test_without_an_iommu_devices_are_listed_without_groups():
    inv = read_pci_inventory(SYSFS / "iommu-off")
    assert not inv.iommu
    assert inv.devices["0000:01:00.0"].iommu_group is None
    assert inv.devices["0000:01:00.0"].group_members == ()


def test_a_missing_sysfs_root_gives_an_empty_inventory(tmp_path):
    inv = read_pci_inventory(tmp_path / "nowhere")
    assert not inv.iommu and inv.devices == {}


def test_a_tree_copied_elsewhere_still_resolves_its_relative_links(tmp_path):
    shutil.copytree(SYSFS / "nvidia", tmp_path / "sys", symlinks=True)
    inv = read_pci_inventory(tmp_path / "sys")
    assert inv.devices["0000:01:00.1"].group_members == (
        "0000:00:01.0",
        "0000:01:00.0",
        "0000:01:00.1",
    )


def test_a_function_with_unreadable_ids_is_skipped_not_fatal(tmp_path):
    shutil.copytree(SYSFS / "intel", tmp_path / "sys", symlinks=True)
    (tmp_path / "sys" / "bus/pci/devices/0000:00:14.0/vendor").write_text("garbage\n")
    inv = read_pci_inventory(tmp_path / "sys")
    assert "0000:00:14.0" not in inv.devices and "0000:00:02.0" in inv.devices


def test_the_node_inventory_carries_the_pci_functions_and_iommu_state():
    inv = node_inventory(SYSFS / "nvidia")
    assert inv.iommu
    gpu = next(d for d in inv.pci if d.address == "0000:01:00.0")
    assert gpu.is_gpu and gpu.iommu_group == 1 and "0000:01:00.1" in gpu.group_members
