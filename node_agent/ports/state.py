"""Port state models: they live in the wire schema (``protocol.ports``); re-exported here."""

from protocol.ports import (
    AppNetworkState,
    DebugAccessState,
    FirewallState,
    OpenPort,
    PortState,
    UsbDeviceState,
    UsbState,
)

__all__ = [
    "AppNetworkState",
    "DebugAccessState",
    "FirewallState",
    "OpenPort",
    "PortState",
    "UsbDeviceState",
    "UsbState",
]
