"""``scripts/demo.py`` (``make demo``) stops cleanly on a terminal's Ctrl-C.

The demo runs as a terminal would run it: the leader of its own process group, and the
test sends SIGINT to that whole group (``os.killpg``), as a terminal does.  Afterwards the
system libvirtd has no domain of the demo node and the system podman no container of it,
and nothing the demo started (controller, agent, swtpm) still runs.  Checked with
``virsh``, ``podman`` and /proc, not with the demo's code.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.libvirt_daemon import cleanup_node_domains
from tests.integration.test_lab_fleet import free_port
from tests.integration.test_lab_fleet import processes_naming as live_processes_naming

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 240.0


def node_uuid(directory: Path) -> str:
    return str(json.loads((directory / "node/identity/node.json").read_text())["node_uuid"])


def domains_of(uri: str, uuid: str) -> list[str]:
    out = subprocess.run(
        ["virsh", "-c", uri, "list", "--all", "--name"], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in out.split() if d.startswith(f"outpost-{uuid[:8]}-")]


def containers_of(uuid: str) -> list[str]:
    out = subprocess.run(
        ["podman", "ps", "--all", "--filter", f"label=outpost.node={uuid}", "--format",
         "{{.Names}}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


class Output:
    """The demo's output, read in a thread so the test can wait on a line with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.text = ""
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(ln) for ln in stream], daemon=True).start()

    def wait_for(self, needle: str, timeout_s: float, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.text:
            try:
                self.text += self.lines.get(timeout=1)
            except queue.Empty:
                if proc.poll() is not None and self.lines.empty():
                    pytest.fail(f"the demo exited ({proc.returncode}) early:\n{self.text[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {needle!r} within {timeout_s:.0f} s:\n{self.text[-4000:]}")

    def rest(self) -> str:
        while not self.lines.empty():
            self.text += self.lines.get()
        return self.text


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    """A fresh state dir QEMU can traverse; whatever the demo left is removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="outpost-demo-it-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    for line in live_processes_naming(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    with contextlib.suppress(OSError, ValueError, KeyError):
        uuid = node_uuid(directory)
        cleanup_node_domains("qemu:///system", uuid)
        for name in containers_of(uuid):
            subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)
    shutil.rmtree(directory, ignore_errors=True)


def test_ctrl_c_to_the_demo_group_removes_its_vm_and_container_then_stops_it(
    built_images, libvirt_uri, demo_dir: Path
):  # type: ignore[no-untyped-def]
    if libvirt_uri != "qemu:///system":
        pytest.skip("the demo uses the system libvirtd")
    for tool in ("swtpm", "podman", "virsh"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    argv = [sys.executable, str(REPO / "scripts/demo.py"), "--dir", str(demo_dir),
            "--port", str(free_port()), "--timeout", str(START_TIMEOUT_S)]  # fmt: skip
    demo = subprocess.Popen(
        argv,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job control makes
    )
    output = Output(demo)
    try:
        output.wait_for("Ctrl-C stops the demo", START_TIMEOUT_S, demo)
        uuid = node_uuid(demo_dir)
        assert domains_of(libvirt_uri, uuid) and containers_of(uuid), "both apps run first"

        started = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        code = demo.wait(STOP_TIMEOUT_S)
        took = time.monotonic() - started
        text = output.rest()
        assert code == 0, text[-4000:]
        assert domains_of(libvirt_uri, uuid) == []
        assert containers_of(uuid) == []
        assert live_processes_naming(demo_dir) == []
        order = [text.index(f"{what} stopped") for what in ("agent", "swtpm", "controller")]
        assert order == sorted(order), text[-3000:]
        assert text.index("the node removed the VM and the container") < order[0]
        print(f"demo stopped {took:.1f} s after SIGINT to its process group")
    finally:
        if demo.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
