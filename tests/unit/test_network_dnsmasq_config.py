"""dnsmasq's configuration: static leases for VMs only, app bridges only, names per network."""

from __future__ import annotations

import uuid
from pathlib import Path

from node_agent.network import make_plan
from node_agent.network.dnsmasq import render_config
from node_agent.network.plan import bridge_name
from protocol.desired_state import DesiredState
from tests.fixtures.netns import app_doc, desired_doc

NODE = str(uuid.UUID(int=5))
STATE = Path("/var/lib/outpost/net")


def _conf(nat: bool = False) -> str:
    doc = desired_doc(
        NODE,
        1,
        [{"name": "site-a", "subnet": "10.1.0.0/24", "nat": nat}],
        [
            app_doc("vm1", "vm", [{"name": "site-a"}]),
            app_doc("web", "container", [{"name": "site-a"}]),
        ],
    )
    return render_config(make_plan(DesiredState.model_validate(doc), NODE), STATE)


def test_no_network_means_no_dnsmasq():
    assert render_config(make_plan(None, NODE), STATE) == ""


def test_dnsmasq_listens_on_the_app_bridges_only():
    lines = _conf().splitlines()
    assert "bind-dynamic" in lines and "except-interface=lo" in lines
    assert [ln for ln in lines if ln.startswith("interface=")] == [
        f"interface={bridge_name('site-a')}"
    ]


def test_only_planned_vm_macs_get_a_lease():
    lines = _conf().splitlines()
    tag = bridge_name("site-a")
    assert f"dhcp-range=set:{tag},10.1.0.0,static,255.255.255.0,1h" in lines
    hosts = [ln for ln in lines if ln.startswith("dhcp-host=")]
    assert len(hosts) == 1 and hosts[0].endswith(",10.1.0.2,vm1")


def test_every_app_resolves_as_name_dot_network():
    lines = _conf().splitlines()
    assert "host-record=vm1.site-a,10.1.0.2" in lines
    assert "host-record=web.site-a,10.1.0.3" in lines


def test_dns_is_forwarded_upstream_only_with_a_nat_network():
    assert "no-resolv" in _conf(nat=False).splitlines()
    assert "no-resolv" not in _conf(nat=True).splitlines()
