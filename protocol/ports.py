"""``PortState``: the node's effective port policy, as reported in ``info.ports``.

Strict pydantic models, every list and string bounded; the agent's ``node_agent.ports``
builds them, the controller stores and shows them (CLI ``outpost ports``, the UI).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from protocol.model_base import MAX_COUNT, StrictModel, Timestamp

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


class FirewallState(StrictModel):
    """The agent's nftables table: is it in force, for which config, how fast it applied."""

    enforced: bool
    """True once the table of ``generation`` is in force (input/forward policy drop)."""
    table: Short = "inet outpost"
    generation: int = Field(default=-1, ge=-1, le=MAX_COUNT)
    """Config generation whose ruleset is in force (-1: no config, everything closed)."""
    apply_ms: float | None = Field(default=None, ge=0.0, le=3_600_000.0)
    """Duration of the last atomic ``nft -f`` replace."""
    error: Text = ""
    """Why the latest config was not applied (the previous ruleset stayed in force)."""
    error_time: Timestamp | None = None


class OpenPort(StrictModel):
    """A port the node answers on from outside, and why."""

    port: int = Field(ge=1, le=65535)
    proto: Literal["tcp", "udp"]
    purpose: Short
    """``app <name>`` for a port map, ``debug-ssh`` for SSH."""
    target: Short = ""
    """Where a port map leads (``10.1.0.2:80``)."""


class AppNetworkState(StrictModel):
    name: Short
    subnet: Short
    gateway: Short
    bridge: Short
    nat: bool
    apps: list[Short] = Field(default_factory=list, max_length=64)


class UsbDeviceState(StrictModel):
    bus_id: Short
    vendor_product: Short
    hub: bool
    authorized: bool
    assigned_to: Short = ""
    product: Short = ""


class UsbState(StrictModel):
    policy: Literal["deny", "assigned-only", "unmanaged"]
    authorized_default_off: bool = False
    """Every bus has ``authorized_default=0``: new devices arrive de-authorised."""
    buses: int = Field(default=0, ge=0, le=MAX_COUNT)
    devices: list[UsbDeviceState] = Field(default_factory=list, max_length=256)
    error: Text = ""


class DebugAccessState(StrictModel):
    ssh: bool = False
    """SSH open in the firewall (``debug_ssh``)."""
    ssh_keys: int = Field(default=0, ge=0, le=MAX_COUNT)
    sshd: bool = False
    """The SSH daemon runs (where the agent manages it: only while ``debug_ssh``)."""
    console: bool = False
    """Login on the serial/VT consoles (``debug_console``)."""
    console_method: Short = ""
    """How the gettys are managed here: systemd, inittab or none found."""
    error: Text = ""


class PortState(StrictModel):
    """Everything a node exposes, as the agent enforces it.

    ``lockdown`` says whether the agent enforces ports at all: ``"off"`` (an agent without
    the ``ports`` setting, e.g. one sharing its host's network namespace) means nothing
    below is enforced by it, said plainly rather than by leaving the report out.
    """

    lockdown: Literal["on", "off"] = "on"
    firewall: FirewallState
    open_ports: list[OpenPort] = Field(default_factory=list, max_length=256)
    networks: list[AppNetworkState] = Field(default_factory=list, max_length=16)
    usb: UsbState = UsbState(policy="unmanaged")
    debug: DebugAccessState = DebugAccessState()

    @classmethod
    def not_enforced(cls) -> PortState:
        """The report of an agent whose port lockdown is off: nothing is enforced."""
        return cls(
            lockdown="off",
            firewall=FirewallState(enforced=False, table=""),
            usb=UsbState(policy="unmanaged"),
        )
