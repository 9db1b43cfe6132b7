"""``outpost ports NODE``: the port state a node reported in ``info``, as the operator sees it."""

from __future__ import annotations

import argparse
from typing import Any

from node_agent.ports.state import (
    AppNetworkState,
    DebugAccessState,
    FirewallState,
    OpenPort,
    PortState,
    UsbDeviceState,
    UsbState,
)
from outpost_cli import main as operator_cli

STATE = PortState(
    firewall=FirewallState(enforced=True, generation=7, apply_ms=3.2),
    open_ports=[OpenPort(port=8080, proto="tcp", purpose="app web", target="10.1.0.2:80")],
    networks=[
        AppNetworkState(
            name="site-a",
            subnet="10.1.0.0/24",
            gateway="10.1.0.1",
            bridge="ob-x",
            nat=True,
            apps=["web"],
        )
    ],
    usb=UsbState(
        policy="deny",
        authorized_default_off=True,
        buses=2,
        devices=[
            UsbDeviceState(bus_id="1-2", vendor_product="0781:5567", hub=False, authorized=False)
        ],
    ),
    debug=DebugAccessState(console_method="systemd"),
)


class FakeClient:
    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert (method, path) == ("GET", "/nodes/SN-1")
        return {"serial": "SN-1", "info": self.info}


def _run(info: dict[str, Any], capsys, json_out: bool = False) -> str:  # type: ignore[no-untyped-def]
    args = argparse.Namespace(node="SN-1", json=json_out, output="table")
    operator_cli.cmd_ports(FakeClient(info), args)  # type: ignore[arg-type]
    return capsys.readouterr().out


def test_the_cli_shows_the_enforced_firewall_and_open_ports(capsys):
    out = _run({"ports": STATE.model_dump(mode="json")}, capsys)
    assert "firewall:  enforced (table inet outpost, generation 7, last apply 3.2 ms)" in out
    assert "8080/tcp   app web  10.1.0.2:80" in out


def test_the_cli_shows_usb_and_debug_access(capsys):
    out = _run({"ports": STATE.model_dump(mode="json")}, capsys)
    assert "debug:     ssh off (0 keys), console login off (systemd)" in out
    assert "usb:       policy deny, new devices off (2 buses)" in out
    assert "1-2  0781:5567  no" in out


def test_the_cli_says_when_a_node_has_not_reported_ports(capsys):
    assert _run({}, capsys) == "SN-1: no port state reported yet\n"


def test_the_ports_subcommand_is_registered():
    args = operator_cli.build_parser().parse_args(["ports", "SN-1", "--json"])
    assert (args.fn, args.node, args.json) == (operator_cli.cmd_ports, "SN-1", True)
