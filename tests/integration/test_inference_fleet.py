"""The inference VM as a fleet app, configured and observed through the controller.

A node namespace runs a real agent (its port lockdown, app networks, a private libvirtd,
the metadata service) that reaches the controller over a veth from this host; an outside
namespace serves an RTSP test stream (Debian's GStreamer RTSP server, the astronaut video).
The operator defines a NAT app network and the GPU variant of the inference VM with
user-data (the stream's URL, OpenVINO face detection, device ``GPU``): the VM boots under
TCG, falls back to the CPU (no GPU here) and says why, and reports fps, latency and
detections to its metadata service; the agent forwards them and the controller shows them
(``GET /apps/<name>/metrics``). Changing the user-data to eyes recreates the VM with the new
seed and the reports show the new mode.

Slow: two boots of a 1.5 GiB VM under TCG (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from controller.cli import main as controller_main
from tests.fixtures.controller_server import free_port
from tests.fixtures.inference import RTSP_SERVER, SYSTEM_PYTHON
from tests.fixtures.libvirt_daemon import cleanup_node_domains
from tests.fixtures.netns import libvirtd_in, make_site, namespaces

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(2400)]

SERIAL = "inference-fleet-1"
METRICS_INTERVAL_S = 5.0
WRITE_BEHIND_S = 5.0
BOOT_LIMIT_S = 900.0
"""Generous: a TCG boot of the VM, Python imports, the model compiled (nothing asserts it)."""
CTL_HOST, CTL_NODE = "10.215.77.1", "10.215.77.2"
RTSP_PORT = 8554


def user_data(outside_ip: str, mode: str) -> str:
    return yaml.safe_dump(
        {
            "source": {"url": f"rtsp://{outside_ip}:{RTSP_PORT}/stream", "width": 320},
            "detector": {"kind": "openvino", "mode": mode, "device": "GPU"},
            "report": {"interval_s": 2},
        }
    )


@dataclass
class Fleet:
    base: Path
    url: str
    token: str
    ca: str
    outside_ip: str
    agent_log: Path
    controller: subprocess.Popen[bytes]
    agent: subprocess.Popen[bytes] | None = None

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(
            method, f"{self.url}/api/v1{path}", headers=headers, verify=self.ca, timeout=60,
            **kwargs,
        )  # fmt: skip

    def reported(self) -> dict[str, Any]:
        nodes = self.api("GET", "/apps/infer/metrics").json().get("nodes") or [{}]
        return nodes[0].get("reported") or {}

    def states(self) -> dict[str, str]:
        info = self.api("GET", f"/nodes/{SERIAL}").json().get("info") or {}
        return {a["name"]: a["state"] for a in info.get("apps", [])}

    def wait_for(self, what: str, predicate: Callable[[], bool], limit: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if self.agent is not None and self.agent.poll() is not None:
                pytest.fail(f"the agent exited: {self.agent_log.read_text()[-3000:]}")
            if predicate():
                return time.monotonic() - started
            time.sleep(1)
        pytest.fail(f"timed out waiting for {what}; states {self.states()}; agent log:\n"
                    f"{self.agent_log.read_text()[-3000:]}")  # fmt: skip


def _kill_pid_file(path: Path) -> None:
    """Stop a daemon the agent left (a namespace's processes outlive its deletion)."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(path.read_text().split()[0]), 15)


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


@contextlib.contextmanager
def _controller(base: Path) -> Iterator[tuple[str, str, str, subprocess.Popen[bytes]]]:
    port = free_port()
    data, token_file = base / "controller", base / "token"
    url = f"https://{CTL_HOST}:{port}"
    init = ["--data-dir", str(data), "init", "--public-url", url, "--tls-host", CTL_HOST]
    init += ["--token-file", str(token_file), "--node-config-interval", "5"]
    init += ["--allow-unpinned-claims", "--tpm-less", "allow"]  # a simulated TPM-less node
    assert controller_main(init) == 0
    assert controller_main(["--data-dir", str(data), "bundle", "--out", str(base / "b")]) == 0
    log = (base / "controller.log").open("ab")
    serve = [sys.executable, "-m", "controller.cli", "--data-dir", str(data), "serve"]
    proc = subprocess.Popen([*serve, "--host", CTL_HOST, "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    ca = str(data / "pki" / "root-ca.pem")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/healthz", verify=ca, timeout=2)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((base / "controller.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield url, token_file.read_text().strip(), ca, proc
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
    inference_vm_gpu_image,  # type: ignore[no-untyped-def]
    moving_video,  # type: ignore[no-untyped-def]
    hypervisor_accel: str,
    libvirt_cache_dir: Path,
    podman_engine,  # type: ignore[no-untyped-def]
) -> Iterator[Fleet]:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip("needs /usr/bin/python3 with python3-gi for the RTSP server")
    base = tmp_path_factory.mktemp("inference-fleet")
    host_if = f"oif{os.getpid() % 100000}"
    with namespaces() as make:
        site = make_site(make)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "ctl0", "netns",
             site.node)  # fmt: skip
        try:
            _run("ip", "addr", "add", f"{CTL_HOST}/30", "dev", host_if)
            _run("ip", "link", "set", host_if, "up")
            _run("ip", "-n", site.node, "addr", "add", f"{CTL_NODE}/30", "dev", "ctl0")
            _run("ip", "-n", site.node, "link", "set", "ctl0", "up")
            rtsp = subprocess.Popen(
                ["ip", "netns", "exec", site.outside, SYSTEM_PYTHON, str(RTSP_SERVER), "--file",
                 str(moving_video.path), "--host", "0.0.0.0", "--port", str(RTSP_PORT)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            assert rtsp.stdout is not None
            assert b"RTSP-READY" in rtsp.stdout.readline(), "the RTSP server did not start"
            with (
                libvirtd_in(site.node, libvirt_cache_dir) as daemon,
                _controller(base) as (url, token, ca, proc),
            ):
                fleet = Fleet(base, url, token, ca, site.outside_ip, base / "agent.log", proc)
                state = Path(tempfile.mkdtemp(prefix="outpost-inffleet-", dir="/tmp"))
                state.chmod(0o755)
                try:
                    img = inference_vm_gpu_image
                    with img.path.open("rb") as fh:
                        params = {"name": "inference-gpu", "format": "qcow2", "sha256": img.sha256}
                        fleet.api("POST", "/images", params=params, data=fh).raise_for_status()
                    fleet.api("POST", "/nodes/claim", json={"serial": SERIAL}).raise_for_status()
                    settings = base / "agent.yaml"
                    settings.write_text(yaml.safe_dump({
                        "state_dir": str(state), "bundle_dir": str(base / "b"),
                        "serial": SERIAL, "libvirt_uri": daemon.uri,
                        "hypervisor": hypervisor_accel, "tpm": "none",
                        "podman_global_args": list(podman_engine.global_args),
                        "reconcile_interval_s": 1.0,
                        "ports": {"network": {"state_dir": str(state / "network")},
                                  "usb_sysfs_root": None, "console_root": None},
                    }))  # fmt: skip
                    with fleet.agent_log.open("ab") as out:
                        fleet.agent = subprocess.Popen(
                            ["ip", "netns", "exec", site.node, sys.executable, "-m",
                             "node_agent.cli", "--config", str(settings), "run"],
                            stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **podman_engine.env},
                        )  # fmt: skip
                    yield fleet
                finally:
                    if fleet.agent is not None:
                        fleet.agent.terminate()
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            fleet.agent.wait(30)
                        fleet.agent.kill()
                    with contextlib.suppress(Exception):
                        node_uuid = fleet.api("GET", f"/nodes/{SERIAL}").json()["uuid"]
                        cleanup_node_domains(daemon.uri, node_uuid)
                    for pid_file in ("metadata/server.pid", "dnsmasq.pid"):
                        _kill_pid_file(state / "network" / pid_file)
                    shutil.rmtree(state, ignore_errors=True)
            rtsp.terminate()
            rtsp.wait(10)
        finally:
            subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)


def test_the_vm_reports_fps_and_detections_through_the_fleet_and_falls_back_to_cpu(fleet: Fleet):
    onboarded = fleet.wait_for(
        "the node", lambda: bool(fleet.api("GET", f"/nodes/{SERIAL}").json().get("uuid")), 180
    )
    settings = {"metrics_interval_s": METRICS_INTERVAL_S, "info_interval_s": 10}
    fleet.api("PATCH", f"/nodes/{SERIAL}", json={"settings": settings}).raise_for_status()
    net = {"name": "cam", "subnet": "10.77.0.0/24", "nat": True}
    assert fleet.api("POST", "/networks", json=net).status_code == 201
    app = {
        "name": "infer",
        "kind": "vm",
        "image": "inference-gpu",
        "resources": {"vcpus": 2, "memory_mib": 1536},
        "networks": [{"name": "cam"}],
        "user_data": user_data(fleet.outside_ip, "face"),
    }
    assert fleet.api("POST", "/apps", json=app).status_code == 201
    started = time.monotonic()
    assert fleet.api("POST", f"/nodes/{SERIAL}/apps", json={"app": "infer"}).status_code == 201

    def detecting() -> bool:
        values = fleet.reported().get("values") or {}
        return values.get("fps", 0) > 0 and values.get("detections_total", 0) > 0

    fleet.wait_for("fps and detections at the controller", detecting, BOOT_LIMIT_S)
    seconds = time.monotonic() - started
    print(f"\nassign -> fps and detections at the controller: {seconds:.0f} s", end=" ")
    print(f"(node onboarded after {onboarded:.0f} s)")
    shown = fleet.reported()
    # shown within one metrics interval of the node receiving it (plus the write-behind)
    assert time.time() - shown["at"] <= METRICS_INTERVAL_S + WRITE_BEHIND_S + 3
    labels = shown["labels"]
    assert (labels["mode"], labels["detector"], labels["device"]) == ("face", "openvino", "CPU")
    assert labels["device_reason"].startswith("no GPU (OpenVINO sees CPU")
    values = shown["values"]
    assert values["latency_p50_ms"] > 0 and values["latency_p99_ms"] >= values["latency_p50_ms"]
    samples = {shown["at"]: values}  # steady state: the reports of the next 20 s
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        reported = fleet.reported()
        samples[reported["at"]] = reported["values"]
        time.sleep(1)
    fps = [v["fps"] for v in samples.values()]
    p50 = [v["latency_p50_ms"] for v in samples.values()]
    print(f"in the VM: {sum(fps) / len(fps):.2f} fps (mean of {len(fps)} reports),", end=" ")
    print(f"p50 {sum(p50) / len(p50):.0f} ms, p99 {values['latency_p99_ms']:.0f} ms")


def test_changing_the_user_data_reaches_the_vm_and_the_metrics_show_the_new_mode(fleet: Fleet):
    body = {k: v for k, v in fleet.api("GET", "/apps/infer").json().items()
            if k not in ("uuid", "instances")}  # fmt: skip
    body["user_data"] = user_data(fleet.outside_ip, "eyes")
    started = time.monotonic()
    assert fleet.api("PUT", "/apps/infer", json=body).status_code == 200

    def eyes() -> bool:
        reported = fleet.reported()
        return (reported.get("labels") or {}).get("mode") == "eyes" and (
            reported.get("values") or {}
        ).get("fps", 0) > 0

    fleet.wait_for("the eyes mode in the metrics", eyes, BOOT_LIMIT_S)
    print(f"\nuser-data changed -> eyes in the metrics: {time.monotonic() - started:.0f} s")
    assert fleet.reported()["values"]["detections_total"] >= 0
