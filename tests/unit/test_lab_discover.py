"""Finding the lab's processes in /proc by what their command line names, not by recorded
pid (real processes; the network-namespace half is in tests/integration/test_lab_lifecycle)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.discover import find_processes, named_paths, role_of
from lab.procs import proc_ref
from tests.unit.test_lab_state import make_state


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/venv/bin/python3", "-m", "node_agent.cli", "--config", "a.json", "run"], "agent"),
        (["/venv/bin/outpost-agent", "run"], "agent"),
        (["python3", "-m", "controller.cli", "serve"], "controller"),
        (["swtpm", "socket", "--tpm2"], "swtpm"),
        (["/usr/bin/qemu-system-x86_64", "-name", "n1"], "qemu"),
        (["/usr/bin/conmon", "--api-version", "1"], "conmon"),
        (["tail", "-f", "agent.log"], "other"),
    ],
)
def test_a_command_line_names_its_role(argv: list[str], role: str):
    assert role_of(argv) == role


def test_paths_are_read_from_plain_option_and_relative_arguments():
    argv = ["swtpm", "--tpmstate", "dir=/lab/n1/swtpm", "--config=nodes/n2/agent.json", "-v"]
    paths = set(named_paths(argv, "/lab"))
    assert {"/lab/n1/swtpm", "/lab/nodes/n2/agent.json"} <= paths
    assert not {"/lab/-v", "/lab/--tpmstate"} & paths  # options are not paths


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def sleeper_named(path: Path, *args: str) -> list[str]:
    """A python process whose command line reads as ``python <path> args...``."""
    path.write_text("import time\ntime.sleep(60)\n")
    return [sys.executable, str(path), *args]


def test_an_agent_started_by_hand_is_found_as_its_nodes_agent(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
):
    state = make_state(tmp_path)
    node = state.nodes[0]
    node.dir.mkdir(parents=True)
    bin_dir = tmp_path.parent / f"{tmp_path.name}-bin"
    bin_dir.mkdir()
    relative = f"nodes/{node.name}/agent.json"  # run from the lab dir, as a tester might
    agent = subprocess.Popen(
        sleeper_named(bin_dir / "node_agent.cli.py", "--config", relative, "run"),
        cwd=tmp_path,
    )
    viewer = subprocess.Popen(["tail", "-f", "/dev/null", str(node.agent_log)])
    controller = subprocess.Popen(
        sleeper_named(bin_dir / "controller.cli.py", "--data-dir", str(tmp_path / "ctl"))
    )
    started += [agent, viewer, controller]
    node.processes = {"agent": proc_ref(agent.pid, "agent")}  # recorded by `up`

    def found() -> dict[int, tuple[str, str, bool]]:
        return {p.ref.pid: (p.role, p.node, p.recorded) for p in find_processes(state)}

    seen = found()
    for _ in range(100):  # a process just started may not show its final argv yet
        if agent.pid in seen and controller.pid in seen:
            break
        controller.poll()
        time.sleep(0.05)
        seen = found()
    assert seen.get(agent.pid) == ("agent", node.name, True)
    assert seen.get(controller.pid) == ("controller", "", False)
    assert viewer.pid not in seen  # a log viewer is not the lab's
    node.processes = {}  # now as if restarted by hand: not recorded
    assert found().get(agent.pid) == ("agent", node.name, False)
    agent.kill()
    agent.wait()
    assert agent.pid not in found()
