"""A whole node under QEMU: image build time and size, boot to attested, apps to RUNNING.

    python -m benchmarks.qemu_node [--runs 1] [--force-image] [--no-apps]

Builds (or reuses; ``--force-image`` rebuilds with the Debian stage cached) the node image,
starts a controller (``outpost-controller init/serve`` on 127.0.0.1, public URL the guest's
10.0.2.100:8443), then per run boots a fresh :class:`lab.qemu_node.QemuNode` (its own
overlay and swtpm) and times: power-on → attested (over the vTPM); assigning a busybox
container and the testvm VM → both RUNNING; a power cycle → both RUNNING again. Prints a
table (seconds).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from images.build import build_all
from images.node_image import build_node_image
from lab.qemu_node import GUEST_CONTROLLER_IP, GUEST_CONTROLLER_URL, QemuNode, QemuNodeConfig

REPO = Path(__file__).resolve().parent.parent
PY = [sys.executable, "-m", "controller.cli"]
APPS = {"c1": "RUNNING", "v1": "RUNNING"}


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 1200) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(1)
    raise SystemExit(f"timed out: {what}")


class Controller:
    def __init__(self, base: Path) -> None:
        self.data, self.port = base / "controller", 18443
        init = ["init", "--public-url", GUEST_CONTROLLER_URL, "--tls-host", GUEST_CONTROLLER_IP]
        init += ["--token-file", str(base / "token"), "--node-config-interval", "5"]
        subprocess.run(
            [*PY, "--data-dir", str(self.data), *init],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*PY, "--data-dir", str(self.data), "bundle", "--out", str(base / "bundle")],
            check=True,
            capture_output=True,
        )
        self.token = (base / "token").read_text().strip()
        self.proc = subprocess.Popen(
            [*PY, "--data-dir", str(self.data), "serve", "--port", str(self.port)],
            stdout=(base / "controller.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        _wait("controller", lambda: self._up(), 60)

    def _up(self) -> bool:
        try:
            self.api("GET", "/nodes")
        except requests.RequestException:
            return False
        return True

    def api(self, method: str, path: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
        return requests.request(
            method,
            f"https://127.0.0.1:{self.port}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            verify=str(self.data / "pki" / "root-ca.pem"),
            timeout=60,
            **kw,
        )

    def states(self, serial: str) -> dict[str, str]:
        info = self.api("GET", f"/nodes/{serial}").json().get("info") or {}
        return {a["name"]: a["state"] for a in info.get("apps", [])}


def one_run(ctl: Controller, image: Path, base: Path, run: int, apps: bool) -> dict[str, float]:
    serial = f"bench-qemu-{run}"
    ctl.api("POST", "/nodes/claim", json={"serial": serial}).raise_for_status()
    work = Path(tempfile.mkdtemp(prefix="outpost-bench-qemu-", dir="/tmp"))
    node = QemuNode(
        QemuNodeConfig(
            f"bench{run}", work, image, "127.0.0.1", ctl.port, base / "bundle", 1536, 2, serial
        )
    )
    out: dict[str, float] = {}
    try:
        node.start()
        trust = lambda: ctl.api("GET", f"/trust/nodes/{serial}").json().get("state")  # noqa: E731
        out["power-on → attested"] = _wait("attested", lambda: trust() == "attested")
        if apps:
            for name in APPS:
                ctl.api("POST", f"/nodes/{serial}/apps", json={"app": name}).raise_for_status()
            out["assign → both RUNNING"] = _wait("apps", lambda: ctl.states(serial) == APPS)
            started, offset = time.monotonic(), node.console_log.stat().st_size
            node.reboot()
            _wait("apps after the power cycle", lambda: _both_running(node, offset))
            out["power cycle → both RUNNING (agent's log)"] = time.monotonic() - started
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def _both_running(node: QemuNode, offset: int) -> bool:
    lines = node.console_log.read_bytes()[offset:].decode(errors="replace").splitlines()
    return all(any(f"app {n} (" in ln and ": RUNNING" in ln for ln in lines) for n in APPS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--force-image", action="store_true")
    parser.add_argument("--no-apps", action="store_true")
    args = parser.parse_args(argv)
    rows: dict[str, list[float]] = {}
    started = time.monotonic()
    image = build_node_image(REPO / "build" / "node", force=args.force_image)
    rows["image build (" + ("forced" if args.force_image else "cached") + ")"] = [
        time.monotonic() - started
    ]
    print(f"image {image}: {image.stat().st_size / 2**20:.0f} MiB")
    base = Path(tempfile.mkdtemp(prefix="outpost-bench-qemu-ctl-"))
    ctl = Controller(base)
    try:
        for img in build_all(REPO / "build" / "images").images:
            if img.name in ("busybox", "testvm"):
                params = {"name": img.name, "format": img.format, "sha256": img.sha256}
                with img.path.open("rb") as fh:
                    ctl.api("POST", "/images", params=params, data=fh).raise_for_status()
        if not args.no_apps:
            cmd = ["sh", "-c", "while true; do sleep 5; done"]
            body = {"name": "c1", "kind": "container", "image": "busybox", "command": cmd}
            ctl.api("POST", "/apps", json=body).raise_for_status()
            body = {"name": "v1", "kind": "vm", "image": "testvm", "resources": {"memory_mib": 96}}
            ctl.api("POST", "/apps", json=body).raise_for_status()
        for run in range(args.runs):
            for key, value in one_run(ctl, image, base, run, not args.no_apps).items():
                rows.setdefault(key, []).append(value)
    finally:
        ctl.proc.terminate()
        ctl.proc.wait(30)
        shutil.rmtree(base, ignore_errors=True)
    print("\n| step (s) | median | min | max | runs |\n|---|---:|---:|---:|---:|")
    for key, values in rows.items():
        print(
            f"| {key} | {statistics.median(values):.1f} | {min(values):.1f} | "
            f"{max(values):.1f} | {len(values)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
