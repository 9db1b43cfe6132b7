"""Bridges and container interfaces: the link layer of a :class:`NodePlan`.

- One Linux bridge per app network (``ob-*``) in the node namespace, carrying the node's
  gateway address and the metadata service's link-local address (169.254.169.254/32, the
  same on every bridge; :mod:`node_agent.metadata` answers on each bridge apart); VM taps
  (made by libvirt) and container veths are its ports.
- Per container app a named network namespace (``outpost-<node8>-<app8>``, the container
  joins it with ``podman run --network ns:/run/netns/<name>``) holding ``eth<i>`` with the
  app's static IP and MAC, the host end ``oc-<app8>-<i>`` on the bridge, and a default
  route via the first network's gateway. The namespace outlives container restarts, so a
  running container keeps its interfaces when they are re-plumbed.

Every object carries its wanted configuration in its interface alias, so a pass that finds
the alias unchanged does nothing; anything else is (re)made. Objects with our prefixes that
the plan does not name are removed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from node_agent.network.host import Host
from node_agent.network.plan import (
    BRIDGE_PREFIX,
    VETH_PREFIX,
    Endpoint,
    NetPlan,
    NodePlan,
    app_netns,
    parse_subnets,
)
from protocol.app_config import METADATA_ADDRESS

__all__ = ["NETNS_DIR", "Links"]

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")


def _bridge_alias(net: NetPlan) -> str:
    return f"outpost-net {net.name} {net.gateway}/{net.subnet.prefixlen} md"


def _endpoint_alias(ep: Endpoint, net: NetPlan) -> str:
    return (
        f"outpost-app {ep.app_name} {ep.network} {ep.ip}/{net.subnet.prefixlen}"
        f" {ep.mac} gw {net.gateway} {net.bridge}"
    )


class Links:
    """Makes the node's bridges and container interfaces match a plan."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def _links(self) -> dict[str, dict[str, Any]]:
        return {str(link.get("ifname")): link for link in self.host.ip_json("-d", "link", "show")}

    def foreign_subnets(self) -> list[IPv4Network]:
        """IPv4 subnets on node interfaces that are not app bridges (uplinks, loopback)."""
        cidrs = []
        for link in self.host.ip_json("addr", "show"):
            if str(link.get("ifname", "")).startswith(BRIDGE_PREFIX):
                continue
            for addr in link.get("addr_info", []):
                if addr.get("family") == "inet":
                    cidrs.append(f"{addr.get('local')}/{addr.get('prefixlen')}")
        return parse_subnets(cidrs)

    # -- bridges ---------------------------------------------------------------------

    def ensure_bridges(self, networks: tuple[NetPlan, ...]) -> None:
        links = self._links()
        for net in networks:
            alias, cur = _bridge_alias(net), links.get(net.bridge)
            if cur is not None and cur.get("ifalias") == alias and "UP" in cur.get("flags", []):
                continue
            if cur is None:
                log.info("network %s: creating bridge %s", net.name, net.bridge)
                self.host.ip("link", "add", net.bridge, "type", "bridge", "stp_state", "0")
            self.host.ip("addr", "flush", "dev", net.bridge)
            self.host.ip("addr", "add", f"{net.gateway}/{net.subnet.prefixlen}", "dev", net.bridge)
            self.host.ip("addr", "add", f"{METADATA_ADDRESS}/32", "dev", net.bridge)
            self.host.ip("link", "set", "dev", net.bridge, "alias", alias)
            self.host.ip("link", "set", "dev", net.bridge, "up")

    # -- container endpoints ------------------------------------------------------------

    def ensure_container_endpoints(self, plan: NodePlan) -> None:
        by_app: dict[str, list[Endpoint]] = defaultdict(list)
        for ep in plan.endpoints:
            if ep.kind == "container":
                by_app[ep.app_uuid].append(ep)
        if not by_app:
            return
        links, namespaces = self._links(), self.host.netns_names()
        for app_uuid, endpoints in by_app.items():
            ns = app_netns(plan.node_uuid, app_uuid)
            if ns not in namespaces:
                log.info("app %s: creating network namespace %s", endpoints[0].app_name, ns)
                self.host.run([self.host.ip_bin, "netns", "add", ns])
                self.host.ip("link", "set", "lo", "up", netns=ns)
            for ep in sorted(endpoints, key=lambda e: e.index):
                net = plan.network(ep.network)
                cur = links.get(ep.host_ifname)
                alias = _endpoint_alias(ep, net)
                unchanged = cur is not None and cur.get("ifalias") == alias
                if unchanged and cur is not None and cur.get("master") == net.bridge:
                    continue
                self._make_veth(ep, net, ns, exists=cur is not None)

    def _make_veth(self, ep: Endpoint, net: NetPlan, ns: str, exists: bool) -> None:
        peer = f"eth{ep.index}"
        log.info("app %s: %s %s/%s on %s", ep.app_name, peer, ep.ip, net.subnet.prefixlen, net.name)
        if exists:
            self.host.ip("link", "del", ep.host_ifname)
        self.host.ip("link", "del", peer, netns=ns, check=False)  # a leftover peer
        self.host.ip(
            "link", "add", ep.host_ifname, "type", "veth", "peer", "name", peer, "netns", ns
        )
        self.host.ip("link", "set", "dev", ep.host_ifname, "alias", _endpoint_alias(ep, net))
        self.host.ip("link", "set", "dev", ep.host_ifname, "master", net.bridge, "up")
        self.host.ip("link", "set", "dev", peer, "address", ep.mac, netns=ns)
        self.host.ip("addr", "add", f"{ep.ip}/{net.subnet.prefixlen}", "dev", peer, netns=ns)
        self.host.ip("link", "set", "dev", peer, "up", netns=ns)
        if ep.index == 0:
            self.host.ip(
                "route", "replace", "default", "via", str(net.gateway), "dev", peer, netns=ns
            )

    # -- removal ---------------------------------------------------------------------------

    def remove_stale(self, plan: NodePlan) -> None:
        """Delete our veths, bridges and app namespaces that ``plan`` does not name."""
        keep_ifs = {ep.host_ifname for ep in plan.endpoints} | {n.bridge for n in plan.networks}
        keep_ns = {
            app_netns(plan.node_uuid, ep.app_uuid)
            for ep in plan.endpoints
            if ep.kind == "container"
        }
        links = self._links()
        for name in sorted(links):  # container veths first, then the bridges they were on
            if name.startswith(VETH_PREFIX) and name not in keep_ifs:
                log.info("removing interface %s", name)
                self.host.ip("link", "del", name, check=False)
        for name, link in links.items():
            kind = (link.get("linkinfo") or {}).get("info_kind")
            if name.startswith(BRIDGE_PREFIX) and kind == "bridge" and name not in keep_ifs:
                log.info("removing bridge %s", name)
                self.host.ip("link", "del", name, check=False)
        prefix = app_netns(plan.node_uuid, "")
        for ns in self.host.netns_names():
            if ns.startswith(prefix) and ns not in keep_ns:
                log.info("removing network namespace %s", ns)
                self.host.run([self.host.ip_bin, "netns", "del", ns], check=False)
