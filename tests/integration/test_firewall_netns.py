"""The node firewall and app networks on real nftables, bridges and veths, in namespaces.

A "node" namespace runs ``NodeNetwork``; an "outside" namespace (its LAN) scans it. Apps
are stood in for by listeners started inside the network namespaces ``NodeNetwork`` makes
for container apps (the real runtimes are in test_network_apps.py).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_agent.network import ApplyError, ConfigRefused, NetworkSettings, NodeNetwork
from node_agent.network import firewall as firewall_module
from node_agent.network.nftables import Match, Rule, Verdict
from node_agent.network.plan import app_netns
from protocol.desired_state import DesiredState
from tests.fixtures.netns import (
    NodeSite,
    app_doc,
    desired_doc,
    http_get,
    listeners,
    ns_run,
    tcp_scan,
)

SCAN_PORTS = [*range(1, 1025), 2222, 5000, 8000, 8080, 8081, 8443, 9090]
NODE_SERVICES = [22, 80, 111, 443, 2222, 8000, 9090]  # daemons listening on the node itself


@pytest.fixture
def node_uuid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def net(node_site: NodeSite, node_uuid: str, tmp_path: Path) -> Iterator[NodeNetwork]:
    network = NodeNetwork(
        NetworkSettings(state_dir=tmp_path / "net", netns=node_site.node), node_uuid
    )
    try:
        yield network
    finally:
        network.teardown()


def _doc(
    node_uuid: str, generation: int, *, ports: bool = True, **settings: object
) -> DesiredState:
    web_ports = [{"host": 8080, "guest": 80}] if ports else []
    return DesiredState.model_validate(
        desired_doc(
            node_uuid,
            generation,
            networks=[
                {"name": "site-a", "subnet": "10.61.0.0/24", "nat": True},
                {"name": "site-b", "subnet": "10.62.0.0/24"},
            ],
            apps=[
                app_doc("web", networks=[{"name": "site-a", "ports": web_ports}]),
                app_doc("peer", networks=[{"name": "site-a"}]),
                app_doc("other", networks=[{"name": "site-b"}]),
            ],
            **settings,
        )
    )


def _app_ns(doc: DesiredState, name: str) -> str:
    app = next(a for a in doc.apps if a.name == name)
    return app_netns(doc.node_uuid, app.uuid)


def _ip(net: NodeNetwork, doc: DesiredState, name: str) -> str:
    app = next(a for a in doc.apps if a.name == name)
    return net.workload_networks(app.uuid).attachments[0].ip


def _open(scan: dict[int, str]) -> list[int]:
    return sorted(p for p, state in scan.items() if state == "open")


def _policies(node: str) -> list[str]:
    text = ns_run(node, "nft", "list", "table", "inet", "outpost").stdout
    return [line.strip() for line in text.splitlines() if "policy" in line]


def test_outside_scan_finds_only_the_declared_port_open(node_site, net, node_uuid):
    doc = _doc(node_uuid, 1)
    net.apply(doc)
    with listeners(node_site.node, NODE_SERVICES), listeners(_app_ns(doc, "web"), [80]):
        scan = tcp_scan(node_site.outside, node_site.node_ip, SCAN_PORTS)
    print(f"\nscan of {len(SCAN_PORTS)} ports: open={_open(scan)}", end=" ")
    print({s: sum(1 for v in scan.values() if v == s) for s in ("open", "closed", "filtered")})
    assert _open(scan) == [8080]


def test_without_a_config_nothing_is_open(node_site, net):
    net.apply(None)
    with listeners(node_site.node, NODE_SERVICES):
        scan = tcp_scan(node_site.outside, node_site.node_ip, SCAN_PORTS)
    assert _open(scan) == []
    assert set(scan.values()) == {"filtered"}


def test_debug_ssh_opens_port_22_only_while_enabled(node_site, net, node_uuid):
    with listeners(node_site.node, NODE_SERVICES):
        net.apply(_doc(node_uuid, 1, debug_ssh=True))
        opened = tcp_scan(node_site.outside, node_site.node_ip, [22, 2222])
        net.apply(_doc(node_uuid, 2, debug_ssh=False))
        closed = tcp_scan(node_site.outside, node_site.node_ip, [22, 2222])
    assert opened == {22: "open", 2222: "filtered"}
    assert closed == {22: "filtered", 2222: "filtered"}


def test_a_port_map_reaches_the_app_from_outside(node_site, net, node_uuid):
    doc = _doc(node_uuid, 1)
    net.apply(doc)
    with listeners(_app_ns(doc, "web"), [80]):
        body = http_get(node_site.outside, f"http://{node_site.node_ip}:8080/")
    assert "NODE-SERVICE" in body  # the listener's greeting, through the DNAT


def test_removing_a_port_map_closes_it(node_site, net, node_uuid):
    doc = _doc(node_uuid, 1)
    net.apply(doc)
    with listeners(_app_ns(doc, "web"), [80]):
        before = tcp_scan(node_site.outside, node_site.node_ip, [8080])
        net.apply(_doc(node_uuid, 2, ports=False))
        after = tcp_scan(node_site.outside, node_site.node_ip, [8080])
    assert (before, after) == ({8080: "open"}, {8080: "filtered"})


def test_apps_on_one_network_reach_each_other(net, node_uuid):
    doc = _doc(node_uuid, 1)
    net.apply(doc)
    with listeners(_app_ns(doc, "web"), [80]):
        scan = tcp_scan(_app_ns(doc, "peer"), _ip(net, doc, "web"), [80])
    assert scan == {80: "open"}


def test_an_app_on_another_network_cannot_reach_them(net, node_uuid):
    doc = _doc(node_uuid, 1)
    net.apply(doc)
    with listeners(_app_ns(doc, "web"), [80]):
        scan = tcp_scan(_app_ns(doc, "other"), _ip(net, doc, "web"), [80])
    assert scan == {80: "filtered"}


def test_a_nat_network_reaches_the_outside_masqueraded(node_site, net, node_uuid):
    doc = _doc(node_uuid, 1)
    net.apply(doc)
    with listeners(node_site.outside, [7070]):
        nat = tcp_scan(_app_ns(doc, "web"), node_site.outside_ip, [7070])
        isolated = tcp_scan(_app_ns(doc, "other"), node_site.outside_ip, [7070])
    assert (nat, isolated) == ({7070: "open"}, {7070: "filtered"})


def test_apps_cannot_reach_the_node_except_dhcp_dns_and_ping(node_site, net, node_uuid):
    doc = _doc(node_uuid, 1, debug_ssh=True)
    net.apply(doc)
    gateway = net.workload_networks(doc.apps[0].uuid).attachments[0].gateway
    with listeners(node_site.node, NODE_SERVICES):
        scan = tcp_scan(_app_ns(doc, "web"), gateway, [*NODE_SERVICES, 53])
    assert _open(scan) == [53]  # dnsmasq's DNS on the gateway; SSH is for the uplinks only


def test_replacing_the_ruleset_never_shows_a_policy_accept(node_site, net, node_uuid):
    net.apply(_doc(node_uuid, 1))
    before = _policies(node_site.node)
    seen: list[list[str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(_policies(node_site.node))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for generation in range(2, 32):
            net.apply(_doc(node_uuid, generation, ports=generation % 2 == 0))
    finally:
        stop.set()
        watcher.join()
    after = _policies(node_site.node)
    expected = [
        "type filter hook input priority filter; policy drop;",
        "type filter hook forward priority filter; policy drop;",
        "type nat hook prerouting priority dstnat; policy accept;",
        "type nat hook postrouting priority srcnat; policy accept;",
    ]
    assert before == after == expected
    assert len(seen) > 10
    assert all(listing == expected for listing in seen)


def test_a_refused_config_keeps_the_previous_ruleset(node_site, net, node_uuid):
    net.apply(_doc(node_uuid, 1))
    listing = ns_run(node_site.node, "nft", "list", "ruleset").stdout
    clash = desired_doc(
        node_uuid,
        2,
        networks=[{"name": "lan", "subnet": "198.51.100.0/24"}],  # the node's uplink subnet
        apps=[app_doc("web", networks=[{"name": "lan", "ports": [{"host": 9000, "guest": 80}]}])],
    )
    with pytest.raises(ConfigRefused, match=r"overlaps 198\.51\.100\.0/24, in use on this node"):
        net.apply(DesiredState.model_validate(clash))
    assert ns_run(node_site.node, "nft", "list", "ruleset").stdout == listing
    assert "in use on this node" in net.record.error


def test_a_refused_config_at_first_start_leaves_the_node_closed(node_site, net, node_uuid):
    clash = desired_doc(
        node_uuid,
        1,
        networks=[{"name": "lan", "subnet": "198.51.100.0/24"}],
        apps=[app_doc("web", networks=[{"name": "lan", "ports": [{"host": 8080, "guest": 80}]}])],
        debug_ssh=True,
    )
    with pytest.raises(ConfigRefused):
        net.apply(DesiredState.model_validate(clash))
    assert _policies(node_site.node)[:2] == [
        "type filter hook input priority filter; policy drop;",
        "type filter hook forward priority filter; policy drop;",
    ]
    with listeners(node_site.node, NODE_SERVICES):
        scan = tcp_scan(node_site.outside, node_site.node_ip, [*NODE_SERVICES, 8080])
    assert _open(scan) == []


def test_a_config_bypassing_the_schema_is_refused_too(node_site, net, node_uuid):
    net.apply(_doc(node_uuid, 1))
    listing = ns_run(node_site.node, "nft", "list", "ruleset").stdout
    good = _doc(node_uuid, 2)
    duplicate = good.apps[1].model_copy(
        update={"networks": [good.apps[0].networks[0]]}  # second app maps host port 8080 too
    )
    bad = good.model_copy(update={"apps": [good.apps[0], duplicate]})  # no validation
    with pytest.raises(ConfigRefused, match=r"host port 8080/tcp is mapped by both"):
        net.apply(bad)
    assert ns_run(node_site.node, "nft", "list", "ruleset").stdout == listing


def test_a_ruleset_the_kernel_rejects_leaves_the_previous_one(
    node_site, net, node_uuid, monkeypatch
):
    net.apply(_doc(node_uuid, 1))
    listing = ns_run(node_site.node, "nft", "list", "ruleset").stdout
    real = firewall_module._input

    def broken(plan, outside):  # type: ignore[no-untyped-def]
        chain = real(plan, outside)
        bad = Rule((Match("tcp dport 70000"),), Verdict.accept())  # out of range: nft refuses
        return chain.__class__(**{**chain.__dict__, "rules": (*chain.rules, bad)})

    monkeypatch.setattr(firewall_module, "_input", broken)
    with pytest.raises(ApplyError, match="nft -f -"):
        net.apply(_doc(node_uuid, 2, ports=False))
    assert ns_run(node_site.node, "nft", "list", "ruleset").stdout == listing


def test_teardown_removes_the_table_bridges_and_app_namespaces(node_site, net, node_uuid):
    doc = _doc(node_uuid, 1)
    net.apply(doc)
    net.teardown()
    assert ns_run(node_site.node, "nft", "list", "ruleset").stdout.strip() == ""
    links = ns_run(node_site.node, "ip", "-br", "link").stdout
    assert "ob-" not in links and "oc-" not in links
    assert _app_ns(doc, "web") not in ns_run(node_site.node, "ip", "netns", "list").stdout
