"""``outpost-lab down`` after ``up`` was killed half-way still removes everything: the
state file written before and after each step is all it needs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests.fixtures.netns import wait_for
from tests.integration.test_lab_fleet import (
    Lab,
    free_port,
    lab_cli,
    leftovers,
    new_lab_dir,
    remove_lab_dir,
    require_lab_host,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_down_after_a_killed_up_removes_everything_up_had_started():
    require_lab_host()
    lab = Lab(new_lab_dir(), free_port())
    up = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "up", "--nodes", "3", "--dir", str(lab.dir),
         "--controller-port", str(lab.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        seen = ""
        while "lab-node-01: agent started" not in seen:
            line = up.stdout.readline()
            assert line, f"up ended early:\n{seen}"
            seen += line
        up.send_signal(signal.SIGKILL)  # no clean-up of its own: a crash
        assert up.wait(10) == -signal.SIGKILL
        state = lab.state()
        # killed while starting agents, or (on a slow machine) just after, while it waited
        # for the nodes to attest: either way `up` never finished and cleaned nothing up
        assert state["phase"] in ("starting", "up")
        pids = [state["controller"]["process"]["pid"]]
        pids += [r["pid"] for n in state["nodes"] for r in n["processes"].values()]
        # the agents it started go on: wait until one has onboarded (uuid on disk)
        identity = lab.dir / "nodes" / "lab-node-01" / "state" / "identity" / "node.json"
        wait_for(identity.exists, 240, "lab-node-01 to onboard")
        uuids = [json.loads(identity.read_text())["node_uuid"]]

        before = leftovers(lab, pids, uuids)
        assert before["processes"] and len(before["namespaces"]) >= 2  # what down must remove
        down = lab_cli("down", "--dir", str(lab.dir))
        assert down.returncode == 0, down.stdout + down.stderr
        assert leftovers(lab, pids, uuids) == {
            "processes": [],
            "namespaces": [],
            "links": [],
            "domains": [],
            "containers": [],
        }
        assert lab.state()["phase"] == "down"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        remove_lab_dir(lab.dir)
