"""Which PCI functions an app's gpu/pci adapters pass through, checked against sysfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent.passthrough import PassthroughError, resolve_adapters
from node_agent.runtime.base import PermanentError
from protocol.desired_state import Adapter

SYSFS = Path(__file__).resolve().parents[1] / "data" / "sysfs"


def gpu(match: str) -> Adapter:
    return Adapter(kind="gpu", match=match)


def test_a_gpu_is_passed_through_with_its_audio_function_but_not_the_root_port():
    assert resolve_adapters([gpu("0000:01:00.0")], SYSFS / "nvidia") == (
        "0000:01:00.0",
        "0000:01:00.1",
    )


def test_a_gpu_can_be_named_by_vendor_and_device():
    assert resolve_adapters([gpu("10de:1eb8")], SYSFS / "nvidia") == (
        "0000:01:00.0",
        "0000:01:00.1",
    )


def test_naming_both_functions_gives_each_address_once():
    adapters = [gpu("0000:01:00.0"), Adapter(kind="pci", match="0000:01:00.1")]
    assert resolve_adapters(adapters, SYSFS / "nvidia") == ("0000:01:00.0", "0000:01:00.1")


def test_an_intel_igpu_alone_in_its_group_is_passed_through_alone():
    assert resolve_adapters([gpu("8086:9a49")], SYSFS / "intel") == ("0000:00:02.0",)


def test_a_group_shared_with_an_unrelated_nic_is_refused():
    with pytest.raises(PassthroughError, match=r"group 1 also holds 0000:02:00\.0.*as a whole"):
        resolve_adapters([gpu("0000:01:00.0")], SYSFS / "nvidia-shared-group")


def test_a_shared_group_is_fine_when_the_app_also_asks_for_the_other_device():
    adapters = [gpu("0000:01:00.0"), Adapter(kind="pci", match="0000:02:00.0")]
    assert resolve_adapters(adapters, SYSFS / "nvidia-shared-group") == (
        "0000:01:00.0",
        "0000:01:00.1",
        "0000:02:00.0",
    )


def test_passthrough_is_refused_when_the_iommu_is_off():
    with pytest.raises(PassthroughError, match="IOMMU is off"):
        resolve_adapters([gpu("0000:01:00.0")], SYSFS / "iommu-off")


def test_a_missing_device_is_refused():
    with pytest.raises(PassthroughError, match="no PCI device at that address"):
        resolve_adapters([gpu("0000:03:00.0")], SYSFS / "nvidia")


def test_a_gpu_adapter_naming_a_non_display_device_is_refused():
    with pytest.raises(PassthroughError, match="not a display controller"):
        resolve_adapters([gpu("0000:00:1f.6")], SYSFS / "nvidia")


def test_a_bridge_cannot_be_passed_through():
    with pytest.raises(PassthroughError, match="PCI bridge"):
        resolve_adapters([Adapter(kind="pci", match="0000:00:01.0")], SYSFS / "nvidia")


def test_usb_adapters_are_not_handled_here():
    assert resolve_adapters([Adapter(kind="usb", match="1d6b:0002")], SYSFS / "nvidia") == ()


def test_a_passthrough_error_is_permanent_so_the_app_goes_to_error():
    assert issubclass(PassthroughError, PermanentError)


def test_an_optional_gpu_the_node_lacks_is_left_out_so_the_app_runs_on_cpu():
    optional = Adapter(kind="gpu", match="10de:1eb8", optional=True)
    assert resolve_adapters([optional], SYSFS / "intel") == ()


def test_an_optional_gpu_is_left_out_when_the_iommu_is_off():
    optional = Adapter(kind="gpu", match="0000:01:00.0", optional=True)
    assert resolve_adapters([optional], SYSFS / "iommu-off") == ()


def test_an_optional_gpu_in_an_incomplete_group_is_left_out():
    optional = Adapter(kind="gpu", match="0000:01:00.0", optional=True)
    assert resolve_adapters([optional], SYSFS / "nvidia-shared-group") == ()


def test_an_optional_gpu_the_node_has_is_passed_through_whole():
    optional = Adapter(kind="gpu", match="10de:1eb8", optional=True)
    assert resolve_adapters([optional], SYSFS / "nvidia") == ("0000:01:00.0", "0000:01:00.1")
