"""The node's firewall policy: a :class:`NodePlan` → the agent's nftables table (pure).

Closed by default (EVE's "ports off"). The table ``inet <name>`` has four base chains:

``input`` (policy drop)
    loopback; established/related; IPv6 neighbour discovery; from each app bridge only
    DHCP, DNS and ping to that network's gateway and HTTP to the metadata service
    (169.254.169.254:80) from that network's own subnet; debug SSH from the uplinks only when the
    config enables it. Nothing else reaches the node.
``forward`` (policy drop)
    established/related; traffic within one app network; egress of NAT networks to the
    uplinks; declared port maps (destination-NATed by ``prerouting``). So two app networks
    cannot reach each other, and the outside reaches an app only through a port map.
``prerouting`` (nat)
    ``host_port → app ip:guest_port`` DNAT for traffic from the uplinks addressed to the node.
``postrouting`` (nat)
    masquerade of NAT networks leaving through a non-app interface.

"Uplinks" are the interfaces named in the settings, else every interface that is not an app
bridge (``ob-*``).
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address

from node_agent.network.nftables import Chain, Match, Rule, Table, Verdict
from node_agent.network.plan import BRIDGE_PREFIX, NodePlan
from protocol.app_config import METADATA_ADDRESS, METADATA_PORT

__all__ = ["build_ruleset"]

_APP_BRIDGES = BRIDGE_PREFIX + "*"


def _outside(uplinks: tuple[str, ...]) -> Match:
    return Match.iif_in(uplinks) if uplinks else Match.iif(_APP_BRIDGES, negate=True)


def _input(plan: NodePlan, outside: Match) -> Chain:
    rules = [
        Rule((Match.loopback(),), Verdict.accept(), "loopback"),
        Rule((Match.ct_state("established", "related"),), Verdict.accept()),
        Rule((Match.ct_state("invalid"),), Verdict.drop()),
        Rule((Match.ipv6_nd(),), Verdict.accept(), "ipv6 neighbour discovery"),
    ]
    metadata = Match.daddr(IPv4Address(METADATA_ADDRESS))
    for net in plan.networks:
        br, gw = Match.iif(net.bridge), Match.daddr(net.gateway)
        rules += [
            Rule((br, Match.dport("udp", 67)), Verdict.accept(), f"dhcp {net.name}"),
            Rule((br, gw, Match.dport("udp", 53)), Verdict.accept(), f"dns {net.name}"),
            Rule((br, gw, Match.dport("tcp", 53)), Verdict.accept(), f"dns {net.name}"),
            Rule((br, gw, Match.icmp("echo-request")), Verdict.accept(), f"ping {net.name}"),
            Rule(
                (br, Match.saddr(net.subnet), metadata, Match.dport("tcp", METADATA_PORT)),
                Verdict.accept(),
                f"metadata {net.name}",
            ),
        ]
    if plan.debug_ssh:
        rules.append(
            Rule((outside, Match.dport("tcp", plan.ssh_port)), Verdict.accept(), "debug ssh")
        )
    return Chain("input", "filter", "input", "filter", "drop", tuple(rules))


def _forward(plan: NodePlan, outside: Match) -> Chain:
    rules = [
        Rule((Match.ct_state("established", "related"),), Verdict.accept()),
        Rule((Match.ct_state("invalid"),), Verdict.drop()),
    ]
    for net in plan.networks:
        br_in, br_out = Match.iif(net.bridge), Match.oif(net.bridge)
        rules.append(Rule((br_in, br_out), Verdict.accept(), f"within {net.name}"))
        if net.nat:
            not_app = Match.oif(_APP_BRIDGES, negate=True)
            rules.append(Rule((br_in, not_app), Verdict.accept(), f"egress {net.name} nat"))
    for fwd in plan.forwards:
        bridge = plan.network(fwd.network).bridge
        matches = (
            outside,
            Match.ct_dnat(),
            Match.oif(bridge),
            Match.daddr(fwd.ip),
            Match.dport(fwd.proto, fwd.guest_port),
        )
        note = f"port map {fwd.host_port}/{fwd.proto} -> {fwd.app_name}"
        rules.append(Rule(matches, Verdict.accept(), note))
    return Chain("forward", "filter", "forward", "filter", "drop", tuple(rules))


def _prerouting(plan: NodePlan, outside: Match) -> Chain:
    rules = tuple(
        Rule(
            (outside, Match.local_daddr(), Match.dport(f.proto, f.host_port)),
            Verdict.dnat(f.ip, f.guest_port),
            f"port map {f.host_port}/{f.proto} -> {f.app_name}:{f.guest_port}",
        )
        for f in plan.forwards
    )
    return Chain("prerouting", "nat", "prerouting", "dstnat", "accept", rules)


def _postrouting(plan: NodePlan) -> Chain:
    not_app = Match.oif(_APP_BRIDGES, negate=True)
    rules = tuple(
        Rule((Match.saddr(n.subnet), not_app), Verdict.masquerade(), f"nat {n.name}")
        for n in plan.networks
        if n.nat
    )
    return Chain("postrouting", "nat", "postrouting", "srcnat", "accept", rules)


def build_ruleset(plan: NodePlan, table: str = "outpost", uplinks: tuple[str, ...] = ()) -> Table:
    """The agent's table for ``plan``; its comment names the generation and a digest."""
    outside = _outside(uplinks)
    chains = (
        _input(plan, outside),
        _forward(plan, outside),
        _prerouting(plan, outside),
        _postrouting(plan),
    )
    body = Table(table, chains).render()
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return Table(table, chains, comment=f"outpost generation {plan.generation} sha256:{digest}")
