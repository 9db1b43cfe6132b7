"""``PortState``: the node's effective port policy, as reported in ``info.ports``.

Strict pydantic models, every list and string bounded; the agent's ``node_agent.ports``
builds them, the controller stores and shows them (CLI ``outpost ports``, the UI).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "AppNetworkState",
    "DebugAccessState",
    "FirewallState",
    "OpenPort",
    "PortState",
    "UsbDeviceState",
    "UsbState",
]

Text = Annotated[str, StringConstraints(max_length=2000)]
Short = Annotated[str, StringConstraints(max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FirewallState(_Strict):
    """The agent's nftables table: is it in force, for which config, how fast it applied."""

    enforced: bool
    """True once the table of ``generation`` is in force (input/forward policy drop)."""
    table: Short = "inet outpost"
    generation: int = Field(default=-1, ge=-1)
    """Config generation whose ruleset is in force (-1: no config, everything closed)."""
    apply_ms: float | None = None
    """Duration of the last atomic ``nft -f`` replace."""
    error: Text = ""
    """Why the latest config was not applied (the previous ruleset stayed in force)."""
    error_time: float | None = None


class OpenPort(_Strict):
    """A port the node answers on from outside, and why."""

    port: int = Field(ge=1, le=65535)
    proto: Literal["tcp", "udp"]
    purpose: Short
    """``app <name>`` for a port map, ``debug-ssh`` for SSH."""
    target: Short = ""
    """Where a port map leads (``10.1.0.2:80``)."""


class AppNetworkState(_Strict):
    name: Short
    subnet: Short
    gateway: Short
    bridge: Short
    nat: bool
    apps: list[Short] = Field(default_factory=list, max_length=64)


class UsbDeviceState(_Strict):
    bus_id: Short
    vendor_product: Short
    hub: bool
    authorized: bool
    assigned_to: Short = ""
    product: Short = ""


class UsbState(_Strict):
    policy: Literal["deny", "assigned-only", "unmanaged"]
    authorized_default_off: bool = False
    """Every bus has ``authorized_default=0``: new devices arrive de-authorised."""
    buses: int = Field(default=0, ge=0)
    devices: list[UsbDeviceState] = Field(default_factory=list, max_length=256)
    error: Text = ""


class DebugAccessState(_Strict):
    ssh: bool = False
    """SSH open in the firewall (``debug_ssh``)."""
    ssh_keys: int = Field(default=0, ge=0)
    sshd: bool = False
    """The SSH daemon runs (where the agent manages it: only while ``debug_ssh``)."""
    console: bool = False
    """Login on the serial/VT consoles (``debug_console``)."""
    console_method: Short = ""
    """How the gettys are managed here: systemd, inittab or none found."""
    error: Text = ""


class PortState(_Strict):
    """Everything a node exposes, as the agent enforces it."""

    firewall: FirewallState
    open_ports: list[OpenPort] = Field(default_factory=list, max_length=256)
    networks: list[AppNetworkState] = Field(default_factory=list, max_length=16)
    usb: UsbState = UsbState(policy="unmanaged")
    debug: DebugAccessState = DebugAccessState()
