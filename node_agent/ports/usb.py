"""USB lockdown through sysfs: nothing is usable unless the config assigns it to an app.

On every pass, under ``<sysfs_root>/bus/usb/devices``:

- every bus (root hub ``usbN``) gets ``authorized_default=0``, so a device plugged in later
  arrives de-authorised (no driver binds to it);
- every existing device that is not a hub is authorised (``authorized=1``) only when the
  policy is ``assigned-only`` and an app of the config passes it through (vendor:product),
  or it is exempted by the node's settings (e.g. a USB uplink NIC); otherwise it gets
  ``authorized=0``. Hubs stay authorised so assigned devices behind them remain reachable.

The sysfs root is configurable so tests run on a fabricated tree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from node_agent.ports.state import UsbDeviceState, UsbState

__all__ = ["UsbGuard"]

log = logging.getLogger(__name__)

HUB_CLASS = "09"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class _Device:
    path: Path
    bus_id: str
    vendor_product: str
    hub: bool
    product: str

    @property
    def authorized(self) -> bool:
        return _read(self.path / "authorized") == "1"


class UsbGuard:
    """Applies the USB policy to the tree under ``sysfs_root`` (``/sys`` on a node)."""

    def __init__(self, sysfs_root: Path = Path("/sys"), exempt: tuple[str, ...] = ()) -> None:
        self.devices_dir = Path(sysfs_root) / "bus" / "usb" / "devices"
        self.exempt = frozenset(exempt)

    def _scan(self) -> tuple[list[Path], list[_Device]]:
        if not self.devices_dir.is_dir():
            return [], []
        buses, devices = [], []
        for entry in sorted(self.devices_dir.iterdir()):
            name = entry.name
            if name.startswith("usb"):
                buses.append(entry)
            elif ":" not in name:  # "1-1:1.0" entries are interfaces
                vp = f"{_read(entry / 'idVendor')}:{_read(entry / 'idProduct')}".lower()
                hub = _read(entry / "bDeviceClass") == HUB_CLASS
                devices.append(_Device(entry, name, vp, hub, _read(entry / "product")[:128]))
        return buses, devices

    def apply(
        self, policy: Literal["deny", "assigned-only"], assigned: Mapping[str, str]
    ) -> UsbState:
        """Lock every bus and (de)authorise each device; ``assigned``: vendor:product → app."""
        errors: list[str] = []
        buses, devices = self._scan()
        locked = 0
        for bus in buses:
            if self._write(bus / "authorized_default", "0", errors):
                locked += 1
        report = []
        for dev in devices:
            owner = assigned.get(dev.vendor_product, "") if policy == "assigned-only" else ""
            want = dev.hub or bool(owner) or dev.vendor_product in self.exempt
            if _read(dev.path / "authorized") != ("1" if want else "0"):
                log.info(
                    "usb %s (%s): %s",
                    dev.bus_id,
                    dev.vendor_product,
                    f"authorised for {owner or 'the node'}" if want else "de-authorised",
                )
                self._write(dev.path / "authorized", "1" if want else "0", errors)
            report.append(
                UsbDeviceState(
                    bus_id=dev.bus_id,
                    vendor_product=dev.vendor_product,
                    hub=dev.hub,
                    authorized=dev.authorized,
                    assigned_to=owner,
                    product=dev.product,
                )
            )
        return UsbState(
            policy=policy,
            authorized_default_off=bool(buses) and locked == len(buses),
            buses=len(buses),
            devices=report[:256],
            error="; ".join(errors)[:2000],
        )

    @staticmethod
    def _write(path: Path, value: str, errors: list[str]) -> bool:
        if _read(path) == value:
            return True
        try:
            path.write_text(value)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            log.error("usb: cannot write %s to %s: %s", value, path, exc)
            return False
        return True
