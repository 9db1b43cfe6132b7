"""``outpost-lab up --kind qemu``: a whole node image booted under QEMU (TCG) with its own
vTPM onboards and attests against the lab's controller, runs the app ``deploy`` gives it
(the image downloaded through the guest's only way out, the guestfwd to the controller),
and ``down`` leaves no QEMU, swtpm or other process of the lab behind."""

from __future__ import annotations

import shutil

import pytest

from tests.integration.test_lab_fleet import (
    Lab,
    free_port,
    lab_cli,
    live,
    new_lab_dir,
    processes_naming,
    remove_lab_dir,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_qemu_node_attests_runs_an_app_and_is_gone_after_down(node_image, built_images):  # type: ignore[no-untyped-def]
    for tool in ("qemu-system-x86_64", "swtpm", "qemu-img"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    lab = Lab(new_lab_dir(), free_port())
    try:
        up = lab_cli("up", "--kind", "qemu", "--nodes", "1", "--image", str(node_image),
                     "--dir", str(lab.dir), "--controller-port", str(lab.port))  # fmt: skip
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "lab-node-01: attested" in up.stdout
        trust = lab.api("GET", "/trust/nodes/lab-node-01").json()
        assert trust["state"] == "attested" and trust["device_key_in_tpm"]

        deploy = lab_cli("deploy", "--dir", str(lab.dir), "--name", "hello", "--timeout", "900")
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        node = lab.api("GET", "/nodes/lab-node-01").json()
        assert {a["name"]: a["state"] for a in node["info"]["apps"]} == {"hello": "RUNNING"}

        status = lab_cli("status", "--dir", str(lab.dir))
        row = next(ln for ln in status.stdout.splitlines() if ln.startswith("lab-node-01"))
        assert row.split()[2:4] == ["running", "running"]  # qemu, swtpm
        pids = [r["pid"] for r in lab.state()["nodes"][0]["processes"].values()]
        assert len(pids) == 2

        down = lab_cli("down", "--dir", str(lab.dir))
        assert down.returncode == 0, down.stderr
        assert [p for p in pids if live(p)] == []
        assert processes_naming(lab.dir) == []
    finally:
        remove_lab_dir(lab.dir)
