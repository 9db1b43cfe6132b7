"""The lab network: a bridge on the host and one network namespace per process node.

Each node namespace holds ``lo`` and ``eth0`` (a veth whose host end is a port of the lab
bridge), an address in the lab subnet and no default route.  An nftables table inside the
namespace drops everything except loopback and TCP to the controller (host_ip:port), so a
node reaches the controller and nothing else: not the host's other services, not the other
nodes.  The node's own app bridges (``ob-*``, made by the agent's port lockdown, whose own
table polices them) are let through, but nothing is forwarded out of ``eth0``.  The host's
own ruleset is never touched.

Names are derived from the 4-hex-digit lab id: bridge ``olab<id>``, namespaces
``olab-<id>-<NNN>``, host veths ``olab<id>v<NNN>`` (at most 15 characters).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.state import NetworkRecord

__all__ = [
    "NETNS_DIR",
    "app_namespaces",
    "bridge_name",
    "choose_subnet",
    "create_bridge",
    "create_node_netns",
    "delete_bridge",
    "delete_link",
    "delete_netns",
    "host_veth_name",
    "in_netns",
    "lab_links",
    "lab_namespaces",
    "lockdown_ruleset",
    "netns_name",
    "netns_pids",
]

NETNS_DIR = Path("/run/netns")
IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
TABLE = "outpost_lab"
APP_BRIDGES = "ob-*"
"""The agent's app bridges inside a node (node_agent.network.plan.BRIDGE_PREFIX)."""
SUBNET_BASE = IPv4Network("10.213.0.0/16")


def bridge_name(lab_id: str) -> str:
    return f"olab{lab_id}"


def netns_name(lab_id: str, index: int) -> str:
    return f"olab-{lab_id}-{index:03d}"


def host_veth_name(lab_id: str, index: int) -> str:
    return f"olab{lab_id}v{index:03d}"


def in_netns(netns: str, argv: Sequence[str | Path]) -> list[str]:
    """``argv`` run in ``netns``'s network namespace only (mounts stay the host's)."""
    return [NSENTER, f"--net={NETNS_DIR / netns}", "--", *map(str, argv)]


def _run(argv: Sequence[str | Path], input_text: str | None = None, check: bool = True) -> str:
    out = subprocess.run(
        [str(a) for a in argv], input=input_text, capture_output=True, text=True, timeout=60
    )
    if check and out.returncode != 0:
        cmd = " ".join(map(str, argv))
        raise LabError(f"`{cmd}` failed: {(out.stderr or out.stdout).strip()}")
    return out.stdout


def _host_networks() -> list[IPv4Network]:
    """Every IPv4 network the host has an address or a route in."""
    nets: list[IPv4Network] = []
    for link in json.loads(_run([IP, "-j", "-4", "addr"]) or "[]"):
        for addr in link.get("addr_info", []):
            nets.append(IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    for route in json.loads(_run([IP, "-j", "-4", "route"]) or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            nets.append(IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
    return nets


def choose_subnet(lab_id: str) -> IPv4Network:
    """A /24 in 10.213.0.0/16 (first try picked by the lab id) the host does not use."""
    used = _host_networks()
    subnets = list(SUBNET_BASE.subnets(new_prefix=24))
    start = int(lab_id, 16) % len(subnets)
    for k in range(len(subnets)):
        net = subnets[(start + k) % len(subnets)]
        if not any(net.overlaps(u) for u in used):
            return net
    raise LabError(f"no free /24 left in {SUBNET_BASE} for the lab network")


def node_ip(net: NetworkRecord, index: int) -> IPv4Address:
    """Node ``index`` (1-based) gets .10+index; .1 is the host (the controller)."""
    return net.subnet.network_address + 10 + index


def _link_exists(name: str) -> bool:
    return subprocess.run([IP, "link", "show", name], capture_output=True).returncode == 0


def create_bridge(net: NetworkRecord) -> None:
    if _link_exists(net.bridge):
        raise LabError(
            f"network interface {net.bridge} already exists: another lab with this id is up"
            " (run `outpost-lab down` for it) or a crashed one left it"
        )
    _run([IP, "link", "add", net.bridge, "type", "bridge"])
    _run([IP, "addr", "add", f"{net.host_ip}/{net.subnet.prefixlen}", "dev", net.bridge])
    _run([IP, "link", "set", net.bridge, "up"])


def delete_bridge(name: str) -> None:
    if _link_exists(name):
        _run([IP, "link", "del", name], check=False)


def lockdown_ruleset(
    controller: IPv4Address, port: int, open_ports: Sequence[int] = ()
) -> dict[str, Any]:
    """nftables (JSON) for a node namespace: loopback, the node's app bridges and TCP to
    the controller, only (and to ``open_ports`` on the lab host: a datastore or site cache
    the tester runs there)."""

    def rule(chain: str, *expr: dict[str, Any]) -> dict[str, Any]:
        return {"add": {"rule": {"family": "inet", "table": TABLE, "chain": chain, "expr": expr}}}

    def chain(name: str) -> dict[str, Any]:
        spec = {"family": "inet", "table": TABLE, "name": name, "type": "filter"}
        return {"add": {"chain": {**spec, "hook": name, "prio": 0, "policy": "drop"}}}

    def eq(left: dict[str, Any], right: object) -> dict[str, Any]:
        return {"match": {"op": "==", "left": left, "right": right}}

    accept: dict[str, Any] = {"accept": None}
    established = {
        "match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}
    }
    iif, oif = {"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}
    return {
        "nftables": [
            {"add": {"table": {"family": "inet", "name": TABLE}}},
            chain("input"),
            chain("output"),
            chain("forward"),
            rule("input", eq(iif, "lo"), accept),
            rule("input", established, accept),
            rule("input", eq(iif, APP_BRIDGES), accept),
            rule("forward", established, accept),
            rule("forward", eq(iif, APP_BRIDGES), eq(oif, APP_BRIDGES), accept),
            rule("output", eq(oif, "lo"), accept),
            rule("output", established, accept),
            rule("output", eq(oif, APP_BRIDGES), accept),
            *(
                rule(
                    "output",
                    eq({"payload": {"protocol": "ip", "field": "daddr"}}, str(controller)),
                    eq({"payload": {"protocol": "tcp", "field": "dport"}}, p),
                    accept,
                )
                for p in (port, *open_ports)
            ),
        ]
    }


def create_node_netns(
    net: NetworkRecord, netns: str, veth: str, ip: IPv4Address, controller_port: int
) -> None:
    """The node's namespace, wired to the lab bridge and locked down."""
    if (NETNS_DIR / netns).exists():
        raise LabError(f"network namespace {netns} already exists (a crashed lab? run down)")
    _run([IP, "netns", "add", netns])
    _run([IP, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    _run([IP, "link", "set", veth, "master", net.bridge, "up"])
    batch = f"link set lo up\naddr add {ip}/{net.subnet.prefixlen} dev eth0\nlink set eth0 up\n"
    _run([IP, "-n", netns, "-batch", "-"], input_text=batch)
    ruleset = json.dumps(lockdown_ruleset(net.host_ip, controller_port, net.open_ports))
    _run(in_netns(netns, [NFT, "-j", "-f", "-"]), input_text=ruleset)


def netns_pids(netns: str) -> list[int]:
    out = _run([IP, "netns", "pids", netns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def delete_netns(netns: str) -> None:
    """Delete the namespace (its veth pair goes with it); no-op when it does not exist."""
    if (NETNS_DIR / netns).exists():
        _run([IP, "netns", "del", netns], check=False)


def lab_namespaces(lab_id: str) -> list[str]:
    """The lab's namespaces that exist now (also ones a crashed ``up`` did not record)."""
    if not NETNS_DIR.is_dir():
        return []
    prefix = f"olab-{lab_id}-"
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def app_namespaces(node_uuids: Iterable[str]) -> list[str]:
    """Container app namespaces the nodes' agents made (``outpost-<node[:8]>-<app[:8]>``,
    node_agent.network.plan.app_netns) that exist now."""
    prefixes = tuple(f"outpost-{u[:8]}-" for u in node_uuids if u)
    if not prefixes or not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefixes))


def lab_links(lab_id: str) -> list[str]:
    """The host ends of the lab's veths that exist now (``olab<id>v<NNN>``)."""
    prefix = f"olab{lab_id}v"
    links = json.loads(_run([IP, "-j", "link", "show"], check=False) or "[]")
    return sorted(n for link in links if (n := link.get("ifname", "")).startswith(prefix))


def delete_link(name: str) -> bool:
    """Delete a host veth (its peer goes with it, even while a dying namespace holds it);
    False when there was none."""
    if not _link_exists(name):
        return False
    _run([IP, "link", "del", name], check=False)
    return True
