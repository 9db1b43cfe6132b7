"""NodePorts: USB and console enforced with the network, and the PortState it reports."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from node_agent.network import ApplyRecord, ConfigRefused, NetworkSettings, NodePlan, make_plan
from node_agent.ports import NodePorts, PortsSettings, PortState
from node_agent.ports.debug_access import ConsoleLogin, SshDaemon
from node_agent.ports.usb import UsbGuard
from protocol.desired_state import DesiredState
from tests.fixtures.netns import app_doc, desired_doc

NODE = str(uuid.UUID(int=11))
CAMERA = "046d:0825"


class FakeNetwork:
    """Stands in for NodeNetwork (which needs a namespace): plans, never touches the host."""

    table_ref = "inet outpost"

    def __init__(self) -> None:
        self.plan: NodePlan | None = None
        self.record = ApplyRecord()
        self.refuse = False

    def apply(self, desired: DesiredState | None) -> NodePlan:
        if self.refuse:
            self.record = ApplyRecord(generation=self.record.generation, error="refused: test")
            raise ConfigRefused("refused: test")
        self.plan = make_plan(desired, NODE)
        self.record = ApplyRecord(generation=self.plan.generation, ok=True, ruleset_seconds=0.012)
        return self.plan


def _doc(generation: int = 3, **settings: object) -> DesiredState:
    apps = [
        app_doc("web", networks=[{"name": "lan", "ports": [{"host": 8080, "guest": 80}]}]),
        app_doc("cam", "vm", adapters=[{"kind": "usb", "match": CAMERA}]),
    ]
    nets = [{"name": "lan", "subnet": "10.5.0.0/24"}]
    return DesiredState.model_validate(desired_doc(NODE, generation, nets, apps, **settings))


@pytest.fixture
def usb_root(tmp_path: Path) -> Path:
    dev = tmp_path / "sys" / "bus" / "usb" / "devices"
    (dev / "usb1").mkdir(parents=True)
    (dev / "usb1" / "authorized_default").write_text("1")
    (dev / "1-1").mkdir()
    for attr, value in (("idVendor", "046d"), ("idProduct", "0825"), ("authorized", "1")):
        (dev / "1-1" / attr).write_text(value)
    return tmp_path / "sys"


@pytest.fixture
def ports(tmp_path: Path, usb_root: Path) -> NodePorts:
    (tmp_path / "root" / "etc").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "inittab").write_text("ttyS0::respawn:/sbin/getty ttyS0\n")
    settings = PortsSettings(network=NetworkSettings(state_dir=tmp_path / "net"))
    return NodePorts(
        settings,
        NODE,
        network=FakeNetwork(),  # type: ignore[arg-type]
        usb=UsbGuard(usb_root),
        console=ConsoleLogin(tmp_path / "root", reload_init=lambda: None),
    )


def _authorized(usb_root: Path) -> str:
    return (usb_root / "bus/usb/devices/1-1/authorized").read_text()


def test_the_state_lists_the_port_maps_and_their_targets(ports):
    state = ports.apply(_doc())
    assert [(p.port, p.proto, p.purpose, p.target) for p in state.open_ports] == [
        (8080, "tcp", "app web", "10.5.0.2:80")
    ]
    assert (state.firewall.enforced, state.firewall.generation, state.firewall.apply_ms) == (
        True,
        3,
        12.0,
    )


def test_debug_ssh_shows_as_an_open_port(ports):
    state = ports.apply(_doc(debug_ssh=True))
    assert (state.open_ports[0].port, state.open_ports[0].purpose, state.debug.ssh) == (
        22,
        "debug-ssh",
        True,
    )


def test_without_a_config_usb_is_denied_and_console_login_off(ports, usb_root):
    state = ports.apply(None)
    assert _authorized(usb_root) == "0" and state.usb.authorized_default_off
    assert (state.debug.console, state.debug.console_method, state.open_ports) == (
        False,
        "inittab",
        [],
    )


def test_an_assigned_usb_device_follows_the_usb_policy(ports, usb_root):
    ports.apply(_doc(usb_policy="assigned-only"))
    assert _authorized(usb_root) == "1"
    ports.apply(_doc(usb_policy="deny"))
    assert _authorized(usb_root) == "0"


def test_a_refused_network_config_still_locks_usb_then_raises(ports, usb_root):
    ports.apply(_doc(usb_policy="assigned-only"))
    ports.network.refuse = True
    with pytest.raises(ConfigRefused):
        ports.apply(_doc(4, usb_policy="deny"))
    state = ports.state()
    assert _authorized(usb_root) == "0"
    assert (state.firewall.generation, state.firewall.error) == (3, "refused: test")


def test_the_state_round_trips_as_json(ports):
    state = ports.apply(_doc(debug_console=True))
    assert PortState.model_validate_json(state.model_dump_json()) == state
    assert state.debug.console is True


def test_the_ssh_daemon_runs_only_while_debug_ssh_is_on(tmp_path: Path):
    calls: list[list[str]] = []
    settings = PortsSettings(
        network=NetworkSettings(state_dir=tmp_path / "net"),
        usb_sysfs_root=None,
        console_root=None,
        ssh_service="ssh.service",
    )
    ports = NodePorts(
        settings,
        NODE,
        network=FakeNetwork(),  # type: ignore[arg-type]
        sshd=SshDaemon("ssh.service", run=lambda argv: calls.append(list(argv))),
    )
    assert ports.apply(None).debug.sshd is False  # a node without config: stopped
    assert ports.apply(_doc(debug_ssh=True)).debug.sshd is True
    ports.apply(_doc(4, debug_ssh=True))  # unchanged: no second start
    assert ports.apply(_doc(5)).debug.sshd is False
    assert calls == [
        ["systemctl", "stop", "ssh.service"],
        ["systemctl", "start", "ssh.service"],
        ["systemctl", "stop", "ssh.service"],
    ]


def test_a_failing_sshd_stop_is_reported_and_tried_again(tmp_path: Path):
    attempts: list[str] = []

    def fail(argv):  # type: ignore[no-untyped-def]
        attempts.append(argv[1])
        raise OSError("systemctl: not found")

    sshd = SshDaemon("ssh.service", run=fail)
    ports = NodePorts(
        PortsSettings(
            network=NetworkSettings(state_dir=tmp_path), usb_sysfs_root=None, console_root=None
        ),
        NODE,
        network=FakeNetwork(),  # type: ignore[arg-type]
        sshd=sshd,
    )
    assert "ssh.service stop failed" in ports.apply(None).debug.error
    ports.apply(None)
    assert attempts == ["stop", "stop"]
