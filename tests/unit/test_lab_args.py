"""``outpost-lab`` arguments and the checks made before anything is touched."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from lab import netlab
from lab.cli import main
from lab.deploy import app_body
from lab.errors import LabError, UsageError
from lab.qemu_fleet import check_ready
from lab.spec import lab_id_for, parse_up
from lab.state import save_state
from lab.up import _check_dir, node_names
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
    assert main(["down", "--dir", str(tmp_path)]) == 0
    assert "nothing to do" in capsys.readouterr().out


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


def test_a_node_namespace_accepts_loopback_and_the_controller_only():
    ruleset = netlab.lockdown_ruleset(ipaddress.IPv4Address("10.213.7.1"), 9443)["nftables"]
    chains = [c["add"]["chain"] for c in ruleset if "chain" in c["add"]]
    assert {(c["hook"], c["policy"]) for c in chains} == {("input", "drop"), ("output", "drop")}
    rules = [r["add"]["rule"] for r in ruleset if "rule" in r["add"]]
    outbound = [r["expr"] for r in rules if r["chain"] == "output"]
    matches = [[e["match"]["right"] for e in expr if "match" in e] for expr in outbound]
    assert matches == [["lo"], [["established", "related"]], ["10.213.7.1", 9443]]
    inbound = [r["expr"] for r in rules if r["chain"] == "input"]
    matches = [[e["match"]["right"] for e in expr if "match" in e] for expr in inbound]
    assert matches == [["lo"], [["established", "related"]]]


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
