"""States that tell the truth, end to end on the real components: a container that exits
at once and a VM whose QEMU is killed become CRASHLOOP in the node's reports, with the
exit code or libvirt's reason, a restart count that grows and the current back-off.

One controller and one agent process (real podman, real libvirt) for the module; every
wait is on the node's info as the controller received it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.e2e import E2ENode, e2e_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXITS_AT_ONCE = ["sh", "-c", "echo boom; exit 3"]


@pytest.fixture(scope="module")
def node(
    tmp_path_factory, built_images, podman_engine, libvirt_uri, hypervisor_accel
) -> Iterator[E2ENode]:  # type: ignore[no-untyped-def]
    with e2e_node(
        tmp_path_factory.mktemp("crashloop"),
        "crashloop-node-1",
        built_images,
        podman_engine,
        libvirt_uri,
        hypervisor_accel,
    ) as n:
        yield n


def _app(node: E2ENode, name: str) -> dict[str, Any]:
    apps = (node.node().get("info") or {}).get("apps", [])
    return next((a for a in apps if a["name"] == name), {})


def _assign(node: E2ENode, name: str, **body: Any) -> None:
    assert node.api("POST", "/apps", json={"name": name, **body}).status_code == 201
    assert node.api("POST", f"/nodes/{node.serial}/apps", json={"app": name}).status_code == 201


def qemu_pid(domain: str) -> int | None:
    """The QEMU process running ``domain`` (its argv names it ``guest=<domain>``)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and b"qemu-system" in argv[0]
            and any(
                a.startswith(f"guest={domain},".encode()) or a == f"guest={domain}".encode()
                for a in argv
            )
        ):
            return int(proc.name)
    return None


def test_a_container_that_exits_at_once_is_a_crash_loop_with_its_exit_code(node: E2ENode):
    _assign(node, "boom", kind="container", image="busybox", command=EXITS_AT_ONCE)
    node.start_agent()
    node.wait_for(
        "boom in CRASHLOOP with exit code 3",
        lambda: (
            _app(node, "boom").get("state") == "CRASHLOOP"
            and _app(node, "boom").get("last_exit_code") == 3
        ),
    )
    first = _app(node, "boom")
    assert first["restarts"] >= 2 and first["backoff_s"] >= 1.0
    assert first["last_stop_reason"] == "exited (code 3)"
    assert first["retry_at"] is not None and "times in a row" in first["error"]
    node.wait_for(
        "boom's restart count to grow",
        lambda: _app(node, "boom").get("restarts", 0) > first["restarts"],
    )
    later = _app(node, "boom")
    assert later["state"] == "CRASHLOOP" and later["backoff_s"] >= first["backoff_s"]
    assert node.api("DELETE", f"/nodes/{node.serial}/apps/boom").status_code == 200
    node.wait_for("boom to be gone", lambda: _app(node, "boom") == {})


def test_a_vm_whose_qemu_dies_is_a_crash_loop_with_the_libvirt_reason(node: E2ENode):
    _assign(node, "v1", kind="vm", image="testvm", resources={"memory_mib": 96})
    if node.agent is None:
        node.start_agent()
    for kill in (1, 2):
        node.wait_for(
            "v1 running",
            lambda: (
                _app(node, "v1").get("state") in ("RUNNING", "CRASHLOOP") and bool(node.domains())
            ),
        )
        (domain,) = node.domains()
        pid = qemu_pid(domain)
        assert pid is not None, f"no QEMU process for {domain}"
        os.kill(pid, signal.SIGKILL)
        node.wait_for(
            f"v1's restart {kill} after its QEMU was killed",
            lambda n=kill: _app(node, "v1").get("restarts", 0) >= n,  # type: ignore[misc]
        )
    node.wait_for("v1 in CRASHLOOP", lambda: _app(node, "v1").get("state") == "CRASHLOOP")
    status = _app(node, "v1")
    assert status["restarts"] >= 2 and status["backoff_s"] >= 1.0
    assert status["last_exit_code"] is None
    assert status["last_stop_reason"] == "shut off (crashed)", status  # libvirt's reason
