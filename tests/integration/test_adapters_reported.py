"""A real agent reports its PCI inventory (from a fabricated sysfs tree) to a real HTTPS
controller; the operator sees the node's adapters through the CLI and API, and the
controller refuses a GPU assignment the node's IOMMU groups do not allow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node_agent.agent import Agent
from node_agent.settings import AgentSettings
from outpost_cli.main import main
from tests.fakes import FakeRuntime

pytestmark = pytest.mark.integration
SYSFS = Path(__file__).resolve().parents[1] / "data" / "sysfs"


def _run_agent(controller_server, tmp_path: Path, tree: str | Path) -> None:  # type: ignore[no-untyped-def]
    controller_server.api("POST", "/nodes/claim", json={"serial": "sn-gpu"}).raise_for_status()
    settings = AgentSettings(
        state_dir=tmp_path / "state",
        bundle_dir=controller_server.bundle(tmp_path / "bundle"),
        serial="sn-gpu",
        pci_sysfs_root=tree if isinstance(tree, Path) else SYSFS / tree,
    )
    runtimes = {"container": FakeRuntime(), "vm": FakeRuntime()}
    agent = Agent(settings, lambda s, node_uuid: (runtimes, "tcg"))
    agent.start()
    agent.once()


def _cli(controller_server, capsys, *args: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    common = ["--url", controller_server.url, "--token", controller_server.token]
    code = main([*common, "--ca", str(controller_server.root_ca), *args])
    return code, capsys.readouterr().out


def test_the_agent_reports_its_gpu_and_the_cli_lists_it(controller_server, tmp_path, capsys):
    _run_agent(controller_server, tmp_path, "nvidia")
    capsys.readouterr()  # what making the bundle printed
    code, out = _cli(controller_server, capsys, "adapters", "sn-gpu", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert data["reported"] and data["iommu"]
    gpu = next(a for a in data["adapters"] if a["address"] == "0000:01:00.0")
    assert gpu["functions"] == ["0000:01:00.0", "0000:01:00.1"] and gpu["assignable"]
    code, table = _cli(controller_server, capsys, "adapters", "sn-gpu")
    assert code == 0 and "0000:01:00.0" in table and "ASSIGNABLE" in table


def test_a_gpu_sharing_its_group_with_a_nic_cannot_be_assigned(controller_server, tmp_path, capsys):
    _run_agent(controller_server, tmp_path, "nvidia-shared-group")
    api = controller_server.api
    api(
        "POST",
        "/images/register",
        json={
            "name": "vm",
            "format": "qcow2",
            "sha256": "d" * 64,
            "size": 10,
            "url": "https://mirror.invalid/vm.qcow2",
        },
    ).raise_for_status()
    body = {"name": "ml", "kind": "vm", "image": "vm"}
    body["adapters"] = [{"kind": "gpu", "match": "10de:1eb8"}]  # type: ignore[assignment]
    api("POST", "/apps", json=body).raise_for_status()
    r = api("POST", "/nodes/sn-gpu/apps", json={"app": "ml"})
    assert r.status_code == 409  # the node's reported hardware, not the body
    assert "IOMMU group 1 also holds 0000:02:00.0" in r.json()["error"]["message"]


def test_on_this_host_without_an_iommu_a_real_pci_device_is_refused(controller_server, tmp_path):
    """This machine's real sysfs: PCI devices but no IOMMU groups (see testbed.md)."""
    if any(Path("/sys/kernel/iommu_groups").glob("*")):
        pytest.fail("this host has IOMMU groups: the test needs one without")
    _run_agent(controller_server, tmp_path, Path("/sys"))
    api = controller_server.api
    shown = api("GET", "/nodes/sn-gpu/adapters").json()
    assert shown["reported"] and shown["iommu"] is False and shown["adapters"]
    device = shown["adapters"][0]
    assert not device["assignable"] and "IOMMU" in device["reason"]
    api(
        "POST",
        "/images/register",
        json={"name": "vm", "format": "qcow2", "sha256": "d" * 64, "size": 10,
              "url": "https://mirror.invalid/vm.qcow2"},
    ).raise_for_status()  # fmt: skip
    body = {"name": "dev", "kind": "vm", "image": "vm"}
    body["adapters"] = [{"kind": device["kind"], "match": device["address"]}]  # type: ignore[assignment]
    api("POST", "/apps", json=body).raise_for_status()
    r = api("POST", "/nodes/sn-gpu/apps", json={"app": "dev"})
    assert r.status_code == 409 and "IOMMU" in r.json()["error"]["message"]
