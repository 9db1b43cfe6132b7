"""USB lockdown on a fabricated sysfs tree (``<root>/bus/usb/devices``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent.ports.usb import UsbGuard

STICK, CAMERA, NIC = "0781:5567", "046d:0825", "0bda:8153"


def _device(root: Path, name: str, vp: str, cls: str = "00", authorized: str = "1") -> Path:
    d = root / "bus" / "usb" / "devices" / name
    d.mkdir(parents=True)
    vendor, product = vp.split(":")
    for attr, value in (
        ("idVendor", vendor),
        ("idProduct", product),
        ("bDeviceClass", cls),
        ("authorized", authorized),
        ("product", f"device {name}"),
    ):
        (d / attr).write_text(value + "\n")
    return d


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """Two buses (root hubs), a hub, a stick, a camera behind the hub, a NIC, interfaces."""
    for bus in ("usb1", "usb2"):
        _device(tmp_path, bus, "1d6b:0002", cls="09")
        (tmp_path / "bus/usb/devices" / bus / "authorized_default").write_text("1\n")
    _device(tmp_path, "1-1", "05e3:0608", cls="09")  # external hub
    _device(tmp_path, "1-2", STICK)
    _device(tmp_path, "1-1.3", CAMERA)
    _device(tmp_path, "2-1", NIC)
    (tmp_path / "bus/usb/devices/1-2:1.0").mkdir()  # an interface: not a device
    return tmp_path


def _authorized(root: Path, name: str) -> str:
    return (root / "bus/usb/devices" / name / "authorized").read_text().strip()


def test_authorized_default_is_written_zero_on_every_bus(sysfs):
    state = UsbGuard(sysfs).apply("deny", {})
    for bus in ("usb1", "usb2"):
        assert (sysfs / "bus/usb/devices" / bus / "authorized_default").read_text().strip() == "0"
    assert (state.buses, state.authorized_default_off) == (2, True)


def test_deny_de_authorises_every_device_but_hubs(sysfs):
    UsbGuard(sysfs).apply("deny", {CAMERA: "cam-app"})
    assert [_authorized(sysfs, n) for n in ("1-2", "1-1.3", "2-1")] == ["0", "0", "0"]
    assert [_authorized(sysfs, n) for n in ("usb1", "1-1")] == ["1", "1"]


def test_an_assigned_device_is_re_authorised(sysfs):
    (sysfs / "bus/usb/devices/1-1.3/authorized").write_text("0\n")
    state = UsbGuard(sysfs).apply("assigned-only", {CAMERA: "cam-app"})
    assert _authorized(sysfs, "1-1.3") == "1"
    camera = next(d for d in state.devices if d.bus_id == "1-1.3")
    assert (camera.authorized, camera.assigned_to) == (True, "cam-app")


def test_an_unassigned_device_is_de_authorised(sysfs):
    UsbGuard(sysfs).apply("assigned-only", {CAMERA: "cam-app"})
    assert (_authorized(sysfs, "1-2"), _authorized(sysfs, "2-1")) == ("0", "0")


def test_a_device_unassigned_later_is_de_authorised_again(sysfs):
    guard = UsbGuard(sysfs)
    guard.apply("assigned-only", {STICK: "backup"})
    guard.apply("assigned-only", {})
    assert _authorized(sysfs, "1-2") == "0"


def test_an_exempt_device_stays_authorised(sysfs):
    UsbGuard(sysfs, exempt=(NIC,)).apply("deny", {})
    assert _authorized(sysfs, "2-1") == "1"


def test_interfaces_are_not_reported_as_devices(sysfs):
    state = UsbGuard(sysfs).apply("deny", {})
    assert sorted(d.bus_id for d in state.devices) == ["1-1", "1-1.3", "1-2", "2-1"]


def test_a_write_failure_is_reported(sysfs):
    target = sysfs / "bus/usb/devices/1-2/authorized"
    target.unlink()
    target.mkdir()  # writing to it fails like a read-only attribute would
    state = UsbGuard(sysfs).apply("deny", {})
    assert "1-2/authorized" in state.error


def test_a_tree_without_usb_reports_no_buses(tmp_path):
    state = UsbGuard(tmp_path).apply("deny", {})
    assert (state.buses, state.devices, state.authorized_default_off) == (0, [], False)
