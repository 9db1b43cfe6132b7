"""``outpost port-forward`` reaches an HTTP server inside a container app on a process
node of ``outpost-lab`` (its own network namespace, the agent's port lockdown on), while
the node's firewall still blocks that port from outside: a scan of the node from the lab
network during the session finds exactly what it found before it.

Real components: the lab's controller (gunicorn), the agent in the node's namespace,
podman, the app network (bridge, veth, the container's namespace), nftables.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.netns import _SCAN as SCAN_PROBE  # the probe the netns scans run
from tests.fixtures.netns import wait_for
from tests.integration.test_lab_fleet import Lab, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NODE = "lab-node-01"
MARKER = "forwarded-through-the-controller"
HTTPD = f"mkdir -p /www && echo {MARKER} >/www/index.html && exec httpd -f -p 80 -h /www"
SCAN = [22, 80, 443, 2222, 8080, 8443]


@pytest.fixture(scope="module")
def lab(built_images) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    with running_lab(1) as the_lab:
        busybox = built_images.get("busybox")
        with busybox.path.open("rb") as fh:
            the_lab.api(
                "POST",
                "/images",
                params={"name": "busybox", "format": "oci-archive", "sha256": busybox.sha256},
                data=fh,
            ).raise_for_status()
        the_lab.api(
            "POST", "/networks", json={"name": "pf-net", "subnet": "10.77.0.0/24"}
        ).raise_for_status()
        the_lab.api(
            "POST",
            "/apps",
            json={
                "name": "web",
                "kind": "container",
                "image": "busybox",
                "command": ["sh", "-c", HTTPD],
                "networks": [{"name": "pf-net"}],
            },
        ).raise_for_status()
        the_lab.api("POST", f"/nodes/{NODE}/apps", json={"app": "web"}).raise_for_status()
        wait_for(lambda: _state(the_lab) == "RUNNING", 240, "web RUNNING on the lab node")
        yield the_lab


def _state(lab: Lab) -> str:
    info = lab.api("GET", f"/nodes/{NODE}").json().get("info") or {}
    return next((a["state"] for a in info.get("apps", []) if a["name"] == "web"), "")


def _node_ip(lab: Lab) -> str:
    return str(next(n["ip"] for n in lab.state()["nodes"] if n["serial"] == NODE))


def _cli(lab: Lab) -> list[str]:
    cli = json.loads((lab.dir / "cli.json").read_text())
    token = Path(cli["token_file"]).read_text().strip()
    return [
        sys.executable,
        "-m",
        "outpost_cli.main",
        "--url",
        cli["url"],
        "--token",
        token,
        "--ca",
        cli["ca"],
    ]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return str(resp.read().decode())


def test_port_forward_reaches_the_app_while_the_firewall_blocks_its_port(lab: Lab, tmp_path: Path):
    node_ip = _node_ip(lab)
    before = tcp_scan_host(node_ip)
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [*_cli(lab), "port-forward", NODE, "web", "0:80", "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(ready.exists, 60, "port-forward listening")
        port = json.loads(ready.read_text())["port"]
        body = _get(f"http://127.0.0.1:{port}/")
        assert MARKER in body
        during = tcp_scan_host(node_ip)
        again = _get(f"http://127.0.0.1:{port}/")  # a second connection: a second session
        assert MARKER in again
    finally:
        proc.terminate()
        proc.wait(10)
    assert during == before
    assert during[80] != "open", during
    sessions = lab.api("GET", "/remote/sessions", params={"node": NODE}).json()["sessions"]
    forwards = [s for s in sessions if s["kind"] == "forward"]
    assert len(forwards) >= 2
    assert all(s["recorded"] is False for s in forwards)
    ended = _wait_ended(lab, forwards[0]["id"])
    assert ended["bytes_from_node"] > len(MARKER)
    print(f"\nscan of {node_ip} before: {before}; during the forward: {during}")


def tcp_scan_host(ip: str) -> dict[int, str]:
    """A TCP scan of the node from the lab network (this host's side of the lab bridge)."""
    out = subprocess.run(
        [sys.executable, "-c", SCAN_PROBE, ip, json.dumps(SCAN), "2.0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return {int(k): v for k, v in json.loads(out.stdout).items()}


def _wait_ended(lab: Lab, sid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        view: dict[str, Any] = lab.api("GET", f"/remote/sessions/{sid}").json()
        if view["state"] == "ended" or time.monotonic() > deadline:
            return view
        time.sleep(0.2)
