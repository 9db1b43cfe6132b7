"""``outpost-lab`` arguments and the checks made before anything is touched."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest

from lab import netlab
from lab.cli import main
from lab.deploy import app_body
from lab.errors import LabError, UsageError
from lab.qemu_fleet import check_ready
from lab.spec import lab_id_for, parse_up
from lab.state import save_state
from lab.up import _check_dir, check_port_free, node_names
from tests.unit.test_lab_state import make_state


@pytest.mark.parametrize(
    ("fields", "flag"),
    [
        ({"nodes": 0}, "--nodes"),
        ({"nodes": 201}, "--nodes"),
        ({"nodes": 3, "controller_port": 80}, "--controller-port"),
        ({"nodes": 3, "controller_port": 70000}, "--controller-port"),
        ({"nodes": 3, "kind": "docker"}, "--kind"),
        ({"nodes": 3, "timeout_s": 1}, "--timeout"),
        ({"nodes": 1, "memory_mib": 256}, "--memory"),
    ],
)
def test_out_of_range_arguments_are_refused_naming_the_flag(
    fields: dict[str, object], flag: str, tmp_path: Path
):
    with pytest.raises(UsageError, match=f"invalid arguments: {flag}"):
        parse_up(dir=tmp_path, **fields)


def test_a_relative_or_root_lab_dir_is_refused():
    with pytest.raises(UsageError, match="--dir"):
        parse_up(nodes=1, dir=Path("lab"))
    with pytest.raises(UsageError, match="--dir"):
        parse_up(nodes=1, dir=Path("/"))


def test_the_cli_exits_2_on_bad_arguments_and_creates_nothing(tmp_path: Path, capsys):
    target = tmp_path / "lab"
    assert main(["up", "--nodes", "0", "--dir", str(target)]) == 2
    assert "--nodes" in capsys.readouterr().err
    assert not target.exists()


def test_deploy_refuses_an_app_file_together_with_a_command(tmp_path: Path, capsys):
    app = tmp_path / "app.yaml"
    app.write_text("name: x\nkind: container\nimage: busybox\n")
    code = main(["deploy", "--dir", str(tmp_path), "--file", str(app), "--command", "true"])
    assert code == 2
    assert "either --file" in capsys.readouterr().err


def test_status_and_down_of_a_dir_without_a_lab(tmp_path: Path, capsys):
    assert main(["status", "--dir", str(tmp_path)]) == 1
    assert "no lab in" in capsys.readouterr().err
    assert main(["down", "--dir", str(tmp_path)]) == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "key", "expected"),
    [
        (["status"], 1, "error", "no lab in"),
        (["down"], 0, "found", False),
        (["deploy", "--name", "x"], 1, "error", "no lab is up"),
        (["up", "--nodes", "0"], 2, "error", "--nodes"),
        (["deploy", "--file", "a.yaml", "--command", "true"], 2, "error", "either --file"),
    ],
)
def test_every_command_prints_json_with_o_json_also_when_it_fails(
    argv: list[str], code: int, key: str, expected: object, tmp_path: Path, capsys
):
    assert main([*argv, "--dir", str(tmp_path / "lab"), "-o", "json"]) == code
    printed = json.loads(capsys.readouterr().out)  # the whole of stdout is one document
    if isinstance(expected, str):
        assert expected in printed[key]
    else:
        assert printed[key] == expected


def test_status_json_flag_is_o_json(tmp_path: Path, capsys):
    assert main(["status", "--dir", str(tmp_path), "--json"]) == 1
    assert "no lab in" in json.loads(capsys.readouterr().out)["error"]


def test_a_port_in_time_wait_is_free_for_the_controller_one_listened_on_is_not():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the server closes first: its side goes to TIME_WAIT
        client.recv(1)
        client.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("0.0.0.0", port))  # what the check used to do
    check_port_free(port)
    with socket.create_server(("127.0.0.1", port)), pytest.raises(LabError, match="in use"):
        check_port_free(port)


def test_up_refuses_a_dir_holding_a_lab_that_is_not_down(tmp_path: Path):
    state = make_state(tmp_path)
    state.phase = "up"
    save_state(state)
    with pytest.raises(LabError, match="outpost-lab down"):
        _check_dir(tmp_path)


def test_up_refuses_a_non_empty_dir_that_is_not_a_lab(tmp_path: Path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(LabError, match="not empty and holds no lab"):
        _check_dir(tmp_path)


def test_up_accepts_a_lab_that_is_down(tmp_path: Path):
    state = make_state(tmp_path)
    state.phase = "down"
    save_state(state)
    _check_dir(tmp_path)


def test_node_names_sort_in_order():
    assert node_names(3) == ["lab-node-01", "lab-node-02", "lab-node-03"]
    assert node_names(120)[-1] == "lab-node-120" and node_names(120)[0] == "lab-node-001"


def test_two_lab_dirs_get_different_ids_and_interface_names_fit_the_kernel():
    a, b = lab_id_for(Path("/tmp/lab-a")), lab_id_for(Path("/tmp/lab-b"))
    assert a != b
    for name in (netlab.bridge_name(a), netlab.host_veth_name(a, 200)):
        assert len(name) <= 15


def test_a_node_namespace_accepts_loopback_its_app_bridges_and_the_controller_only():
    ruleset = netlab.lockdown_ruleset(ipaddress.IPv4Address("10.213.7.1"), 9443)["nftables"]
    chains = [c["add"]["chain"] for c in ruleset if "chain" in c["add"]]
    assert {(c["hook"], c["policy"]) for c in chains} == {
        ("input", "drop"), ("output", "drop"), ("forward", "drop")
    }  # fmt: skip
    rules = [r["add"]["rule"] for r in ruleset if "rule" in r["add"]]

    def matches(chain: str) -> list[list[object]]:
        exprs = [r["expr"] for r in rules if r["chain"] == chain]
        return [[e["match"]["right"] for e in expr if "match" in e] for expr in exprs]

    established = [["established", "related"]]
    assert matches("output") == [["lo"], established, ["ob-*"], ["10.213.7.1", 9443]]
    assert matches("input") == [["lo"], established, ["ob-*"]]  # app bridges: the agent's
    assert matches("forward") == [established, ["ob-*", "ob-*"]]  # never out of eth0


def test_qemu_nodes_need_a_built_node_image(tmp_path: Path):
    with pytest.raises(LabError, match=r"node image not built: .* run `make images-node`"):
        check_ready(tmp_path / "outpost-node.qcow2")


def test_the_default_app_is_a_busybox_container_that_keeps_running():
    body = app_body("hello", "busybox", None, None, "container")
    assert body["kind"] == "container" and body["image"] == "busybox"
    assert body["command"][:2] == ["sh", "-c"] and "while true" in body["command"][2]


def test_an_app_file_must_be_a_mapping_with_a_name(tmp_path: Path):
    app = tmp_path / "app.yaml"
    app.write_text("- just\n- a list\n")
    with pytest.raises(LabError, match="expected a mapping"):
        app_body("", "busybox", None, app, "container")
