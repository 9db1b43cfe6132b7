"""The firewall policy as an nftables table: closed by default, open only where declared."""

from __future__ import annotations

import uuid

import pytest

from node_agent.network import make_plan
from node_agent.network.firewall import build_ruleset
from node_agent.network.nftables import Chain, Match, Rule, Table, Verdict
from node_agent.network.plan import bridge_name
from protocol.desired_state import DesiredState
from tests.fixtures.netns import app_doc, desired_doc

NODE = str(uuid.UUID(int=9))
NETS = [
    {"name": "site-a", "subnet": "10.1.0.0/24", "nat": True},
    {"name": "site-b", "subnet": "10.2.0.0/24"},
]
WEB = app_doc("web", networks=[{"name": "site-a", "ports": [{"host": 8080, "guest": 80}]}])


def _table(apps=(), **settings) -> Table:  # type: ignore[no-untyped-def]
    doc = DesiredState.model_validate(desired_doc(NODE, 4, NETS, list(apps), **settings))
    return build_ruleset(make_plan(doc, NODE))


def _chain(table: Table, name: str) -> Chain:
    return next(c for c in table.chains if c.name == name)


def _rules(table: Table, name: str) -> list[str]:
    return [r.render() for r in _chain(table, name).rules]


def test_input_and_forward_drop_by_default():
    table = build_ruleset(make_plan(None, NODE))
    assert (_chain(table, "input").policy, _chain(table, "forward").policy) == ("drop", "drop")


def test_no_config_accepts_only_loopback_established_and_neighbour_discovery():
    table = build_ruleset(make_plan(None, NODE))
    assert _rules(table, "input") == [
        'iif "lo" accept comment "loopback"',
        "ct state established,related accept",
        "ct state invalid drop",
        "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit,"
        ' nd-neighbor-advert } ip6 hoplimit 255 accept comment "ipv6 neighbour discovery"',
    ]
    assert _rules(table, "prerouting") == []


def test_ssh_is_closed_unless_debug_ssh_is_on():
    assert not any("dport 22" in r for r in _rules(_table(), "input"))
    assert 'iifname != "ob-*" tcp dport 22 accept comment "debug ssh"' in _rules(
        _table(debug_ssh=True), "input"
    )


def test_a_port_map_is_a_dnat_from_the_uplinks_to_the_app():
    (rule,) = _rules(_table([WEB]), "prerouting")
    assert rule == (
        'iifname != "ob-*" fib daddr type local tcp dport 8080 dnat ip to 10.1.0.2:80'
        ' comment "port map 8080/tcp -> web:80"'
    )


def test_a_port_map_is_forwarded_only_to_its_target():
    forward = _rules(_table([WEB]), "forward")
    bridge = bridge_name("site-a")
    assert (
        f'iifname != "ob-*" ct status dnat oifname "{bridge}" ip daddr 10.1.0.2 tcp dport 80'
        ' accept comment "port map 8080/tcp -> web"'
    ) in forward


def test_traffic_between_two_networks_is_not_accepted():
    a, b = bridge_name("site-a"), bridge_name("site-b")
    forward = _rules(_table([WEB]), "forward")
    assert not any(
        f'iifname "{a}" oifname "{b}"' in r or f'iifname "{b}" oifname "{a}"' in r for r in forward
    )
    assert f'iifname "{a}" oifname "{a}" accept comment "within site-a"' in forward


def test_only_nat_networks_get_egress_and_masquerade():
    table = _table([WEB])
    assert _rules(table, "postrouting") == [
        'ip saddr 10.1.0.0/24 oifname != "ob-*" masquerade comment "nat site-a"'
    ]
    egress = [r for r in _rules(table, "forward") if "egress" in r]
    assert egress == [
        f'iifname "{bridge_name("site-a")}" oifname != "ob-*" accept comment "egress site-a nat"'
    ]


def test_named_uplinks_replace_the_not_an_app_bridge_match():
    doc = DesiredState.model_validate(desired_doc(NODE, 1, NETS, [WEB], debug_ssh=True))
    table = build_ruleset(make_plan(doc, NODE), uplinks=("eth0", "wlan0"))
    assert 'iifname { "eth0", "wlan0" } tcp dport 22 accept comment "debug ssh"' in _rules(
        table, "input"
    )


def test_the_script_replaces_the_table_in_one_transaction():
    script = _table([WEB]).script()
    lines = script.splitlines()
    assert lines[:3] == ["table inet outpost", "delete table inet outpost", "table inet outpost {"]
    assert script.count("delete table") == 1


def test_the_comment_changes_with_the_content_only():
    assert _table([WEB]).comment == _table([WEB]).comment
    assert _table([WEB]).comment != _table().comment


@pytest.mark.parametrize("bad", ['eth0" accept', "a b", "x" * 16, ""])
def test_interface_names_cannot_inject_rules(bad):
    with pytest.raises(ValueError, match="invalid interface name"):
        Match.iif(bad)


def test_comments_cannot_inject_rules():
    with pytest.raises(ValueError, match="invalid nft comment"):
        Rule((Match.loopback(),), Verdict.accept(), 'x" ; flush ruleset ; "').render()
