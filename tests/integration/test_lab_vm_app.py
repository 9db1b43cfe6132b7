"""A VM app on a lab process node runs as a libvirt domain labelled with the node's uuid,
and ``outpost-lab down`` destroys and undefines it."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.test_lab_fleet import Lab, lab_cli, leftovers, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def domains_of(lab: Lab, uuid: str) -> list[str]:
    out = subprocess.run(
        ["virsh", "-c", lab.state()["libvirt_uri"], "list", "--all", "--name"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in out.split() if d.startswith(f"outpost-{uuid[:8]}-")]


def test_down_removes_the_vm_of_a_lab_node(built_images):  # type: ignore[no-untyped-def]
    with running_lab(1) as lab:
        deploy = lab_cli("deploy", "--dir", str(lab.dir), "--name", "vm1", "--image", "testvm")
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        uuid = lab.api("GET", "/nodes/lab-node-01").json()["uuid"]
        assert len(domains_of(lab, uuid)) == 1
        state = lab.state()
        pids = [state["controller"]["process"]["pid"]]
        pids += [r["pid"] for n in state["nodes"] for r in n["processes"].values()]

        down = lab_cli("down", "--dir", str(lab.dir))
        assert down.returncode == 0, down.stderr
        assert "1 domain(s)" in down.stdout
        assert leftovers(lab, pids, [uuid]) == {
            "processes": [],
            "namespaces": [],
            "links": [],
            "domains": [],
            "containers": [],
        }
