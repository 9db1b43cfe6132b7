"""The network plan: what the node's networking must be for one desired state (pure).

:func:`make_plan` checks a :class:`DesiredState` against this node (again, even though the
schema already refuses overlapping subnets, duplicate host ports and unknown networks: a
plan is the last gate before the kernel) and turns it into typed objects:

- :class:`NetPlan` per app network: a Linux bridge, its subnet, the node's gateway address
  (the first host) and whether egress is NATed;
- :class:`Endpoint` per (app, network): the app's static IP and MAC and the host-side
  interface (a libvirt tap for a VM, a veth for a container);
- :class:`PortForward` per declared port map: ``host_port → app ip:guest_port``.

IPs are kept from ``previous`` allocations when still valid and otherwise taken lowest-free,
so an app keeps its address across config changes. Interface names are derived from names
and uuids (≤ 15 characters, fixed prefixes the firewall matches on).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from node_agent.network.errors import ConfigRefused
from protocol.desired_state import DesiredState

__all__ = [
    "BRIDGE_PREFIX",
    "TAP_PREFIX",
    "VETH_PREFIX",
    "Endpoint",
    "NetPlan",
    "NodePlan",
    "PortForward",
    "app_netns",
    "bridge_name",
    "mac_for",
    "make_plan",
    "parse_subnets",
    "tap_name",
    "veth_name",
]

BRIDGE_PREFIX = "ob-"
"""App network bridges: ``ob-<sha256(network name)[:10]>``."""
TAP_PREFIX = "ov-"
"""VM taps (made by libvirt): ``ov-<app uuid[:8]>-<index>``."""
VETH_PREFIX = "oc-"
"""Host ends of container veths: ``oc-<app uuid[:8]>-<index>``; the peer is ``eth<index>``."""


def bridge_name(network: str) -> str:
    return BRIDGE_PREFIX + hashlib.sha256(network.encode()).hexdigest()[:10]


def tap_name(app_uuid: str, index: int) -> str:
    return f"{TAP_PREFIX}{app_uuid[:8]}-{index}"


def veth_name(app_uuid: str, index: int) -> str:
    return f"{VETH_PREFIX}{app_uuid[:8]}-{index}"


def app_netns(node_uuid: str, app_uuid: str) -> str:
    """The named network namespace a container app joins (``/run/netns/<name>``)."""
    return f"outpost-{node_uuid[:8]}-{app_uuid[:8]}"


def mac_for(app_uuid: str, network: str, salt: int = 0) -> str:
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) for an app on a network."""
    digest = hashlib.sha256(f"{app_uuid}/{network}/{salt}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


@dataclass(frozen=True)
class NetPlan:
    """One app network: a bridge with the node's gateway address on it."""

    name: str
    bridge: str
    subnet: IPv4Network
    gateway: IPv4Address
    nat: bool


@dataclass(frozen=True)
class Endpoint:
    """An app's interface on one network."""

    app_uuid: str
    app_name: str
    kind: Literal["vm", "container"]
    network: str
    index: int
    ip: IPv4Address
    mac: str
    host_ifname: str


@dataclass(frozen=True)
class PortForward:
    """``host_port/proto`` on the node's uplinks → ``ip:guest_port`` of an app."""

    host_port: int
    proto: Literal["tcp", "udp"]
    guest_port: int
    ip: IPv4Address
    app_name: str
    app_uuid: str
    network: str


@dataclass(frozen=True)
class NodePlan:
    """Everything the node's networking must be, for one config generation."""

    node_uuid: str
    generation: int = -1
    networks: tuple[NetPlan, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    forwards: tuple[PortForward, ...] = ()
    debug_ssh: bool = False
    ssh_port: int = 22

    def network(self, name: str) -> NetPlan:
        return next(n for n in self.networks if n.name == name)

    def endpoints_of(self, app_uuid: str) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.app_uuid == app_uuid)

    def allocations(self) -> dict[str, str]:
        """``{"<network>/<app uuid>": "<ip>"}``, the form kept on disk."""
        return {f"{e.network}/{e.app_uuid}": str(e.ip) for e in self.endpoints}


def _problems(
    desired: DesiredState, foreign: Sequence[IPv4Network], ssh_port: int
) -> Iterable[str]:
    """Every reason ``desired`` cannot be realised on this node."""
    names: set[str] = set()
    subnets: list[tuple[str, IPv4Network]] = []
    for net in desired.networks:
        if net.name in names:
            yield f"network {net.name!r} is declared twice"
        names.add(net.name)
        try:
            subnet = IPv4Network(net.subnet, strict=True)
        except ValueError as exc:
            yield f"network {net.name!r}: subnet {net.subnet!r}: {exc}"
            continue
        if subnet.is_loopback or subnet.is_link_local or subnet.is_multicast or subnet.is_reserved:
            yield f"network {net.name!r}: {subnet} is not a usable unicast range"
        for other, other_subnet in subnets:
            if subnet.overlaps(other_subnet):
                yield f"networks {other!r} ({other_subnet}) and {net.name!r} ({subnet}) overlap"
        for used in foreign:
            if subnet.overlaps(used):
                yield f"network {net.name!r} ({subnet}) overlaps {used}, in use on this node"
        subnets.append((net.name, subnet))
    mapped: dict[tuple[int, str], str] = {}
    if desired.settings.debug_ssh:
        mapped[(ssh_port, "tcp")] = "debug SSH"
    for app in desired.apps:
        seen: set[str] = set()
        for att in app.networks:
            if att.name not in names:
                yield f"app {app.name!r}: unknown network {att.name!r}"
            if att.name in seen:
                yield f"app {app.name!r}: network {att.name!r} is listed twice"
            seen.add(att.name)
            for pm in att.ports:
                key = (pm.host, pm.proto)
                if key in mapped:
                    yield (
                        f"host port {pm.host}/{pm.proto} is mapped by both {mapped[key]!r}"
                        f" and {app.name!r}"
                    )
                mapped.setdefault(key, app.name)


def _free_ips(
    subnet: IPv4Network, gateway: IPv4Address, taken: set[IPv4Address]
) -> Iterable[IPv4Address]:
    for ip in subnet.hosts():
        if ip != gateway and ip not in taken:
            yield ip


def _allocate(
    desired: DesiredState, nets: Mapping[str, NetPlan], previous: Mapping[str, str]
) -> dict[tuple[str, str], IPv4Address]:
    """(network, app uuid) → IP: previous ones kept where still valid, then lowest free."""
    wanted = [(att.name, app.uuid) for app in desired.apps for att in app.networks]
    result: dict[tuple[str, str], IPv4Address] = {}
    taken: dict[str, set[IPv4Address]] = {name: set() for name in nets}
    for net_name, app_uuid in wanted:
        try:
            ip = IPv4Address(previous.get(f"{net_name}/{app_uuid}", ""))
        except ValueError:
            continue
        net = nets[net_name]
        usable = ip in net.subnet and ip not in (net.subnet.network_address, net.gateway)
        if usable and ip != net.subnet.broadcast_address and ip not in taken[net_name]:
            result[(net_name, app_uuid)] = ip
            taken[net_name].add(ip)
    for net_name, app_uuid in wanted:
        if (net_name, app_uuid) in result:
            continue
        net = nets[net_name]
        free = next(iter(_free_ips(net.subnet, net.gateway, taken[net_name])), None)
        if free is None:
            raise ConfigRefused(f"network {net_name!r} ({net.subnet}) has no free address left")
        result[(net_name, app_uuid)] = free
        taken[net_name].add(free)
    return result


def make_plan(
    desired: DesiredState | None,
    node_uuid: str,
    previous: Mapping[str, str] | None = None,
    foreign: Sequence[IPv4Network] = (),
    ssh_port: int = 22,
) -> NodePlan:
    """The plan for ``desired`` (None: no config yet → everything closed).

    ``foreign`` are subnets already used on this node by interfaces the agent does not own
    (uplinks, management); an app network overlapping one is refused. Raises
    :class:`ConfigRefused` listing every problem; nothing is changed by a refusal.
    """
    if desired is None:
        return NodePlan(node_uuid=node_uuid, ssh_port=ssh_port)
    problems = list(_problems(desired, foreign, ssh_port))
    if problems:
        raise ConfigRefused(
            f"config generation {desired.generation} refused: " + "; ".join(problems)
        )
    nets: dict[str, NetPlan] = {}
    for net in desired.networks:
        subnet = IPv4Network(net.subnet)
        gateway = next(subnet.hosts())
        nets[net.name] = NetPlan(net.name, bridge_name(net.name), subnet, gateway, net.nat)
    ips = _allocate(desired, nets, previous or {})
    endpoints: list[Endpoint] = []
    forwards: list[PortForward] = []
    macs: set[str] = set()
    for app in desired.apps:
        for index, att in enumerate(app.networks):
            ip = ips[(att.name, app.uuid)]
            salt, mac = 0, mac_for(app.uuid, att.name)
            while mac in macs:
                salt += 1
                mac = mac_for(app.uuid, att.name, salt)
            macs.add(mac)
            ifname = (tap_name if app.kind == "vm" else veth_name)(app.uuid, index)
            endpoints.append(
                Endpoint(app.uuid, app.name, app.kind, att.name, index, ip, mac, ifname)
            )
            forwards += [
                PortForward(pm.host, pm.proto, pm.guest, ip, app.name, app.uuid, att.name)
                for pm in att.ports
            ]
    return NodePlan(
        node_uuid=node_uuid,
        generation=desired.generation,
        networks=tuple(nets.values()),
        endpoints=tuple(endpoints),
        forwards=tuple(sorted(forwards, key=lambda f: (f.proto, f.host_port))),
        debug_ssh=desired.settings.debug_ssh,
        ssh_port=ssh_port,
    )


def parse_subnets(cidrs: Iterable[str]) -> list[IPv4Network]:
    """IPv4 networks of interface addresses like ``192.0.2.1/24`` (others are skipped)."""
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_interface(cidr).network)
        except ValueError:
            continue
    return [n for n in out if isinstance(n, IPv4Network)]
