"""``NodePorts``: every external port of the node, closed unless the config opens it.

One object for the agent (and the reconciler) to hold::

    ports = NodePorts(PortsSettings(network=NetworkSettings(state_dir=...)), node_uuid)
    ports.apply(desired)            # firewall + app networks, USB, console/SSH → PortState
    ports.workload_networks(uuid)   # the app's interfaces, for its WorkloadSpec
    ports.state()                   # the last PortState, for info
    ports.teardown()                # uninstall: the agent's table and networks go away

``apply`` is safe to call on every pass and with ``None`` (no config yet: all closed). A
refused or failing network config raises (the previous ruleset stays in force) after USB
and debug access have been enforced anyway, and is reported in ``state().firewall.error``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from node_agent.network import NetworkError, NetworkSettings, NodeNetwork, WorkloadNetworks
from node_agent.ports.debug_access import ConsoleLogin, SshDaemon, SshKeys
from node_agent.ports.state import (
    AppNetworkState,
    DebugAccessState,
    FirewallState,
    OpenPort,
    PortState,
    UsbState,
)
from node_agent.ports.usb import UsbGuard
from protocol.desired_state import DesiredState

__all__ = ["NodePorts", "PortsSettings"]

log = logging.getLogger(__name__)

VendorProduct = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{4}:[0-9a-f]{4}$")]


class PortsSettings(BaseModel):
    """Node-side settings of the port lockdown (the config decides what is open)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: NetworkSettings
    usb_sysfs_root: Path | None = Path("/sys")
    """Root of the sysfs tree holding ``bus/usb/devices`` (None: USB not managed)."""
    usb_exempt: tuple[VendorProduct, ...] = ()
    """Devices the node itself needs (e.g. a USB uplink NIC), always authorised."""
    console_root: Path | None = Path("/")
    """Root under which systemd or /etc/inittab manage the gettys (None: not managed)."""
    console_ttys: tuple[str, ...] = ("ttyS0", "ttyS1", "hvc0", "tty1")
    ssh_authorized_keys: Path | None = None
    """File to hold the config's SSH keys while debug SSH is on (None: keys not managed)."""
    ssh_service: str | None = None
    """systemd unit of the SSH daemon, started only while debug SSH is on and stopped
    otherwise (None: the daemon is not managed; the firewall still closes its port)."""


def _usb_assigned(desired: DesiredState | None) -> dict[str, str]:
    if desired is None:
        return {}
    return {
        ad.match: app.name
        for app in desired.apps
        if app.desired == "running"
        for ad in app.adapters
        if ad.kind == "usb"
    }


class NodePorts:
    """Firewall, app networks, USB and debug access of one node."""

    def __init__(
        self,
        settings: PortsSettings,
        node_uuid: str,
        *,
        network: NodeNetwork | None = None,
        usb: UsbGuard | None = None,
        console: ConsoleLogin | None = None,
        sshd: SshDaemon | None = None,
    ) -> None:
        self.settings = settings
        self.network = network or NodeNetwork(settings.network, node_uuid)
        root = settings.usb_sysfs_root
        self.usb = usb or (UsbGuard(root, settings.usb_exempt) if root else None)
        croot = settings.console_root
        self.console = console or (ConsoleLogin(croot, settings.console_ttys) if croot else None)
        self.ssh = SshKeys(settings.ssh_authorized_keys)
        self.sshd = sshd or SshDaemon(settings.ssh_service)
        self._usb_state = UsbState(policy="unmanaged")

    def apply(self, desired: DesiredState | None) -> PortState:
        """Enforce ``desired`` (None: everything closed); see the module docstring."""
        error: NetworkError | None = None
        try:
            self.network.apply(desired)
        except NetworkError as exc:
            error = exc
        node = desired.settings if desired else None
        if self.usb is not None:
            policy = node.usb_policy if node else "deny"
            self._usb_state = self.usb.apply(policy, _usb_assigned(desired))
        if self.console is not None:
            self.console.apply(bool(node and node.debug_console))
        # SSH keys follow the ruleset in force, not a refused config.
        plan = self.network.plan
        ssh_on = bool(plan and plan.debug_ssh)
        self.ssh.apply(ssh_on, node.ssh_authorized_keys if node and ssh_on else [])
        self.sshd.apply(ssh_on)
        if error is not None:
            raise error
        return self.state()

    def workload_networks(self, app_uuid: str) -> WorkloadNetworks:
        return self.network.workload_networks(app_uuid)

    def teardown(self) -> None:
        """Remove the agent's table, bridges, dnsmasq and app namespaces (uninstall).

        USB and console settings are left as they are (locked): re-enable them by hand.
        """
        self.network.teardown()

    def state(self) -> PortState:
        """The node's effective port policy, from what is in force now."""
        record, plan = self.network.record, self.network.plan
        firewall = FirewallState(
            enforced=plan is not None,
            table=self.network.table_ref,
            generation=plan.generation if plan else -1,
            apply_ms=round(record.ruleset_seconds * 1000, 2)
            if record.ruleset_seconds is not None
            else None,
            error=record.error,
            error_time=record.error_time,
        )
        ports: list[OpenPort] = []
        networks: list[AppNetworkState] = []
        if plan is not None:
            if plan.debug_ssh:
                ports.append(OpenPort(port=plan.ssh_port, proto="tcp", purpose="debug-ssh"))
            ports += [
                OpenPort(
                    port=f.host_port,
                    proto=f.proto,
                    purpose=f"app {f.app_name}",
                    target=f"{f.ip}:{f.guest_port}",
                )
                for f in plan.forwards
            ]
            networks = [
                AppNetworkState(
                    name=n.name,
                    subnet=str(n.subnet),
                    gateway=str(n.gateway),
                    bridge=n.bridge,
                    nat=n.nat,
                    apps=sorted({e.app_name for e in plan.endpoints if e.network == n.name}),
                )
                for n in plan.networks
            ]
        console = self.console
        debug = DebugAccessState(
            ssh=bool(plan and plan.debug_ssh),
            ssh_keys=self.ssh.count,
            sshd=self.sshd.running,
            console=bool(console and console.enabled),
            console_method=console.method if console else "unmanaged",
            error="; ".join(
                e for e in (console.error if console else "", self.ssh.error, self.sshd.error) if e
            ),
        )
        return PortState(
            firewall=firewall, open_ports=ports, networks=networks, usb=self._usb_state, debug=debug
        )
