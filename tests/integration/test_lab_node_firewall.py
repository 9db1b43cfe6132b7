"""The lab's own nftables table in a process node's namespace, with real namespaces and
TCP: the node reaches the controller only; its app bridges (``ob-*``, the agent's port
lockdown polices them with its own table) are let in; nothing is forwarded out of ``eth0``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from lab import netlab
from tests.fixtures.netns import listeners, ns_run, tcp_scan

pytestmark = pytest.mark.integration

CONTROLLER_PORT = 9443
APP_PORT = 8080


def wire(make: Callable[[str], str], node: str, role: str, ifname: str, subnet: str) -> str:
    """A namespace joined to ``node`` by a veth named ``ifname`` on the node's side;
    ``node`` is .1 and the new namespace .2 of ``subnet`` (a /24 prefix like 10.250.1)."""
    peer = make(role)
    run = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True)  # noqa: E731
    run("-n", node, "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", peer)
    run("-n", node, "addr", "add", f"{subnet}.1/24", "dev", ifname)
    run("-n", node, "link", "set", ifname, "up")
    run("-n", peer, "addr", "add", f"{subnet}.2/24", "dev", "eth0")
    run("-n", peer, "link", "set", "eth0", "up")
    run("-n", peer, "route", "add", "default", "via", f"{subnet}.1")
    return peer


def test_a_lab_node_lets_its_app_bridges_in_and_forwards_nothing_out_of_eth0(
    netns_factory: Callable[[str], str],
):
    node = netns_factory("node")
    host = wire(netns_factory, node, "host", "eth0n", "10.250.0")  # the lab bridge side
    app = wire(netns_factory, node, "app", "ob-test1", "10.250.1")  # an app bridge
    other = wire(netns_factory, node, "other", "xx-test1", "10.250.2")  # not an app bridge
    ns_run(host, "ip", "route", "add", "10.250.1.0/24", "via", "10.250.0.1")
    ns_run(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    ruleset = netlab.lockdown_ruleset(IPv4Address("10.250.0.2"), CONTROLLER_PORT)
    ns_run(node, "nft", "-j", "-f", "-", input_text=json.dumps(ruleset))

    with listeners(node, [APP_PORT]), listeners(host, [CONTROLLER_PORT, 22]):
        assert tcp_scan(node, "10.250.0.2", [CONTROLLER_PORT, 22]) == {
            CONTROLLER_PORT: "open",
            22: "filtered",
        }
        assert tcp_scan(app, "10.250.1.1", [APP_PORT]) == {APP_PORT: "open"}
        assert tcp_scan(other, "10.250.2.1", [APP_PORT]) == {APP_PORT: "filtered"}
        # an app's traffic routed through the node toward the host is dropped
        assert tcp_scan(app, "10.250.0.2", [CONTROLLER_PORT]) == {CONTROLLER_PORT: "filtered"}
