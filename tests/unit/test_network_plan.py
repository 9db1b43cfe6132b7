"""The network plan: bad configs refused with clear errors, stable addresses, safe names."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address, IPv4Network

import pytest
from pydantic import ValidationError

from node_agent.network import ConfigRefused, make_plan
from node_agent.network.plan import bridge_name, tap_name, veth_name
from protocol.desired_state import AppSpec, DesiredState, Network
from tests.fixtures.netns import app_doc, desired_doc

NODE = str(uuid.UUID(int=7))
NETS = [
    {"name": "site-a", "subnet": "10.1.0.0/24", "nat": True},
    {"name": "site-b", "subnet": "10.2.0.0/24"},
]


def _doc(apps, networks=NETS, generation=1, **settings) -> DesiredState:  # type: ignore[no-untyped-def]
    return DesiredState.model_validate(desired_doc(NODE, generation, networks, apps, **settings))


def _unchecked(apps, networks=NETS) -> DesiredState:  # type: ignore[no-untyped-def]
    """A desired state built without the schema's cross-checks (as a buggy producer would)."""
    return _doc([]).model_copy(
        update={
            "networks": [Network.model_validate(n) for n in networks],
            "apps": [AppSpec.model_validate(a) for a in apps],
        }
    )


def _web(host: int = 8080, net: str = "site-a", name: str = "web") -> dict[str, object]:
    return app_doc(name, networks=[{"name": net, "ports": [{"host": host, "guest": 80}]}])


# -- the schema (protocol) refuses them first ---------------------------------------------


def test_the_schema_refuses_overlapping_subnets():
    nets = [{"name": "a", "subnet": "10.1.0.0/16"}, {"name": "b", "subnet": "10.1.2.0/24"}]
    with pytest.raises(
        ValidationError, match=r"networks 10\.1\.0\.0/16 and 10\.1\.2\.0/24 overlap"
    ):
        _doc([], networks=nets)


def test_the_schema_refuses_a_host_port_mapped_twice():
    with pytest.raises(
        ValidationError, match=r"host port 8080/tcp is mapped by both 'web' and 'web2'"
    ):
        _doc([_web(), _web(name="web2")])


def test_the_schema_refuses_an_unknown_network():
    with pytest.raises(ValidationError, match=r"app 'web': unknown network 'nowhere'"):
        _doc([_web(net="nowhere")])


# -- the plan refuses them again, and what only the node can know ----------------------------


def test_the_plan_refuses_overlapping_subnets_that_bypassed_the_schema():
    nets = [{"name": "a", "subnet": "10.1.0.0/16"}, {"name": "b", "subnet": "10.1.2.0/24"}]
    with pytest.raises(ConfigRefused, match=r"networks 'a' \(10\.1\.0\.0/16\) and 'b'"):
        make_plan(_unchecked([], networks=nets), NODE)


def test_the_plan_refuses_a_duplicate_host_port_that_bypassed_the_schema():
    with pytest.raises(ConfigRefused, match=r"host port 8080/tcp is mapped by both"):
        make_plan(_unchecked([_web(), _web(name="web2")]), NODE)


def test_the_plan_refuses_an_unknown_network_that_bypassed_the_schema():
    with pytest.raises(ConfigRefused, match=r"app 'web': unknown network 'nowhere'"):
        make_plan(_unchecked([_web(net="nowhere")]), NODE)


def test_the_plan_lists_every_problem_in_one_error():
    with pytest.raises(ConfigRefused) as caught:
        make_plan(_unchecked([_web(), _web(name="web2", net="nowhere")]), NODE)
    assert "unknown network 'nowhere'" in str(caught.value)
    assert "mapped by both" in str(caught.value)


def test_a_subnet_in_use_on_the_node_is_refused():
    with pytest.raises(ConfigRefused, match=r"overlaps 10\.1\.0\.0/20, in use on this node"):
        make_plan(_doc([]), NODE, foreign=[IPv4Network("10.1.0.0/20")])


def test_a_port_map_on_the_ssh_port_is_refused_when_debug_ssh_is_on():
    with pytest.raises(ConfigRefused, match=r"host port 22/tcp is mapped by both 'debug SSH'"):
        make_plan(_doc([_web(host=22)], debug_ssh=True), NODE)


def test_a_loopback_subnet_is_refused():
    with pytest.raises(ConfigRefused, match="not a usable unicast range"):
        make_plan(_doc([], networks=[{"name": "lo", "subnet": "127.1.0.0/16"}]), NODE)


def test_a_full_subnet_is_refused():
    nets = [{"name": "tiny", "subnet": "10.9.0.0/29"}]  # 6 hosts: gateway + 5 apps
    apps = [app_doc(f"app{i}", networks=[{"name": "tiny"}]) for i in range(6)]
    with pytest.raises(ConfigRefused, match="no free address left"):
        make_plan(_doc(apps, networks=nets), NODE)


# -- what a plan holds -----------------------------------------------------------------


def test_no_config_plans_no_networks_and_no_open_ports():
    plan = make_plan(None, NODE)
    assert (plan.generation, plan.networks, plan.forwards, plan.debug_ssh) == (-1, (), (), False)


def test_the_gateway_is_the_first_host_and_apps_follow():
    plan = make_plan(_doc([_web(), app_doc("db", networks=[{"name": "site-a"}])]), NODE)
    assert plan.network("site-a").gateway == IPv4Address("10.1.0.1")
    assert [str(e.ip) for e in plan.endpoints] == ["10.1.0.2", "10.1.0.3"]


def test_an_app_keeps_its_address_when_others_come_and_go():
    db = app_doc("db", networks=[{"name": "site-a"}])
    first = make_plan(_doc([_web(), db]), NODE)
    second = make_plan(_doc([db]), NODE, previous=first.allocations())
    third = make_plan(_doc([_web(name="new"), db]), NODE, previous=second.allocations())
    db_ip = {str(e.ip) for p in (first, second, third) for e in p.endpoints if e.app_name == "db"}
    assert db_ip == {"10.1.0.3"}
    assert [str(e.ip) for e in third.endpoints if e.app_name == "new"] == ["10.1.0.2"]


def test_a_port_map_targets_the_apps_address_on_that_network():
    plan = make_plan(_doc([_web(host=8443)]), NODE)
    (fwd,) = plan.forwards
    assert (fwd.host_port, fwd.proto, str(fwd.ip), fwd.guest_port) == (8443, "tcp", "10.1.0.2", 80)


def test_interface_names_fit_the_kernel_limit():
    names = [bridge_name("n" * 63), tap_name(str(uuid.uuid4()), 7), veth_name(str(uuid.uuid4()), 7)]
    assert all(len(n) <= 15 for n in names)


def test_macs_are_stable_and_unique_per_app_and_network():
    apps = [app_doc(f"a{i}", networks=[{"name": "site-a"}, {"name": "site-b"}]) for i in range(20)]
    one, two = make_plan(_doc(apps), NODE), make_plan(_doc(apps), NODE)
    macs = [e.mac for e in one.endpoints]
    assert macs == [e.mac for e in two.endpoints]
    assert len(set(macs)) == len(macs) and all(m.startswith("52:54:00:") for m in macs)
