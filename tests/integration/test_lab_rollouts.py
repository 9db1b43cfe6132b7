"""Rollouts on a lab of 20 process nodes in 4 sites, each node a real agent with podman,
its app on an app network and probed over HTTP by the agent.

One lab for every test (in file order): a healthy version rolls out in batches of 25 %
with at most one node per site updating (checked from the agents' own logs) → a version
whose HTTP probe fails stops in its first batch and rolls back by itself → an agent
restart keeps the app's restart count and health → two nodes of one site, capped at a
total download rate, pre-fetch a new image from a datastore nearer the site (this test's
HTTP server on the lab host) at that rate, and the rollout's expected completion comes
true.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.server
import io
import itertools
import json
import os
import re
import signal
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.process_node import start_agent
from lab.state import load_state, save_state
from node_agent.heartbeat import read_heartbeat
from tests.integration.test_lab_fleet import Lab, free_port, lab_cli, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NODES = 20
SITES = 4
SERVE = "mkdir -p /www && {health} && exec httpd -f -p 8080 -h /www"
HEALTHY = SERVE.format(health="echo ok > /www/health")
BROKEN = SERVE.format(health="true")  # serves, but /health answers 404
PROBE = {"kind": "http", "port": 8080, "path": "/health", "interval_s": 1,
         "timeout_s": 1, "unhealthy_threshold": 2}  # fmt: skip
APP = {
    "name": "web",
    "kind": "container",
    "image": "busybox",
    "networks": [{"name": "lan"}],
    "command": ["sh", "-c", HEALTHY],
    "health": PROBE,
}
WAIT_S = 900.0
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def site_of(index: int) -> str:
    return f"site-{(index - 1) % SITES}"


# -- a datastore nearer the site: this test's HTTP server on the lab host ------------------


@dataclass
class Served:
    """What the datastore sent, per blob: (monotonic time, bytes so far) marks."""

    marks: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rate(self, sha: str) -> tuple[float, float]:
        """(bytes per second from 10 % of the bytes sent to the last, seconds sent)."""
        with self.lock:
            marks = sorted(self.marks.get(sha, []))
        total = sum(n for _, n in marks)
        sent, start = 0, None
        for t, n in marks:
            sent += n
            if start is None and sent >= total * 0.1:
                start, start_sent = t, sent
        assert start is not None and marks, f"nothing of {sha[:12]} was served"
        return (total - start_sent) / (marks[-1][0] - start), marks[-1][0] - marks[0][0]


def datastore(host: str, port: int, blobs: dict[str, Path], served: Served) -> Callable[[], None]:
    """Serve ``/sha256/<digest>`` (with Range) on host:port; returns the stop function."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            sha = self.path.rsplit("/", 1)[-1]
            path = blobs.get(sha)
            if path is None:
                self.send_error(404)
                return
            size = path.stat().st_size
            start = 0
            if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
                start = int(m.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            with path.open("rb") as fh:
                fh.seek(start)
                while chunk := fh.read(16384):
                    try:
                        self.wfile.write(chunk)
                    except OSError:
                        return
                    with served.lock:
                        served.marks.setdefault(sha, []).append((time.monotonic(), len(chunk)))

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def server_bind(self) -> None:
            import socket

            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            super().server_bind()

    server = Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


def padded_oci(source: Path, out: Path, pad_bytes: int) -> Path:
    """``source`` (an OCI archive) with an unreferenced blob of ``pad_bytes`` random bytes:
    a valid image that takes a while to download."""
    with tarfile.open(source) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo("padding.bin")
        info.size = pad_bytes
        dst.addfile(info, io.BytesIO(os.urandom(pad_bytes)))
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- the lab -----------------------------------------------------------------------------------


@dataclass
class Fleet:
    lab: Lab
    store_port: int
    served: Served = field(default_factory=Served)

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = self.lab.api(method, path, **kw)
        assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def app_on(self, serial: str, app: str = "web") -> dict[str, Any]:
        info = self.api("GET", f"/nodes/{serial}")["info"] or {}
        return next((a for a in info.get("apps", []) if a["name"] == app), {})

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(1.0)
        pytest.fail(f"timed out waiting for {what}")

    def all_healthy(self, app: str = "web") -> bool:
        nodes = self.api("GET", "/nodes")["nodes"]
        apps = [next((a for a in (n["info"] or {}).get("apps", []) if a["name"] == app), {})
                for n in nodes]  # fmt: skip
        return len(apps) == NODES and all(
            a.get("state") == "RUNNING" and (a.get("health") or {}).get("status") == "healthy"
            for a in apps
        )

    def finish(self, rid: int, timeout: float = WAIT_S) -> dict[str, Any]:
        self.wait(
            f"rollout {rid} to end",
            lambda: self.api("GET", f"/rollouts/{rid}")["state"] in ("succeeded", "rolled_back"),
            timeout,
        )
        return self.api("GET", f"/rollouts/{rid}")

    def agent_log(self, serial: str) -> Path:
        return self.lab.dir / "nodes" / serial / "agent.log"


@pytest.fixture(scope="module")
def fleet(built_images) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    port = free_port()
    with running_lab(NODES, "--open-port", str(port)) as lab:
        f = Fleet(lab, port)
        f.api("POST", "/networks", json={"name": "lan", "subnet": "10.77.0.0/24"})
        for i in range(1, NODES + 1):
            labels = {"fleet": "lab", "site": site_of(i)}
            f.api("PATCH", f"/nodes/lab-node-{i:02d}", json={"labels": labels})
        app_file = lab.dir / "web.yaml"
        app_file.write_text(yaml.safe_dump(APP))
        deploy = lab_cli("deploy", "--dir", str(lab.dir), "--file", str(app_file), timeout=900)
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        f.wait("web healthy on every node", f.all_healthy)
        yield f


def _start(f: Fleet, version: dict[str, Any], **body: Any) -> tuple[int, float]:
    started = time.time()
    out = f.api("POST", "/rollouts", json={"app": version, **body})
    return int(out["id"]), started


def _log_times(path: Path, pattern: str, after: float) -> list[float]:
    """Times (epoch) of the agent's log lines matching ``pattern`` at or after ``after``."""
    times = []
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_TIME.match(line)
        if m and re.search(pattern, line):
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t >= after - 1.0:
                times.append(t)
    return times


def test_a_20_node_rollout_in_batches_updates_one_node_per_site_at_a_time(fleet: Fleet):
    v2 = {**APP, "env": {"VERSION": "2"}}
    rid, started = _start(
        fleet,
        v2,
        rings=[{"name": "all", "batches": {"percent": 25}, "soak_s": 3, "deadline_s": 300}],
        budgets=[{"group_by": ["site"], "max_updating": 1}],
    )
    r = fleet.finish(rid)
    assert r["state"] == "succeeded", r["reason"]
    assert r["rings"][0]["batch_count"] == 4
    # the agents' own account: from "spec changed, recreating" to "health healthy"
    windows: dict[str, list[tuple[float, float, str]]] = {}
    for i in range(1, NODES + 1):
        serial = f"lab-node-{i:02d}"
        log = fleet.agent_log(serial)
        (stop_old,) = _log_times(log, r"app web \(\w+\): spec changed, recreating", started)
        healthy = [t for t in _log_times(log, r"app web \(\w+\): health healthy", started)
                   if t >= stop_old]  # fmt: skip
        assert healthy, f"{serial} never reported the new version healthy"
        windows.setdefault(site_of(i), []).append((stop_old, healthy[0], serial))
    for site, spans in windows.items():
        spans.sort()
        for (_, end, a), (begin, _, b) in itertools.pairwise(spans):
            assert end <= begin, f"{site}: {a} and {b} were updating at once"
    assert sorted(len(s) for s in windows.values()) == [5, 5, 5, 5]
    assert fleet.all_healthy()


def test_a_version_whose_http_probe_fails_stops_at_its_first_batch_and_rolls_back(fleet):
    before = {f"lab-node-{i:02d}": fleet.app_on(f"lab-node-{i:02d}") for i in range(1, 21)}
    broken = {**APP, "env": {"VERSION": "3"}, "command": ["sh", "-c", BROKEN]}
    rid, started = _start(
        fleet,
        broken,
        rings=[{"name": "all", "batches": {"percent": 25}, "soak_s": 3, "deadline_s": 120}],
        budgets=[{"group_by": ["site"], "max_updating": 1}],
    )
    r = fleet.finish(rid)
    assert r["state"] == "rolled_back"
    assert "ring all batch 1 failed its health gate" in r["reason"]
    assert "UNHEALTHY: health probe: GET /health on" in r["reason"]
    assert "answered HTTP 404" in r["reason"]
    switched = {n["serial"] for n in r["rings"][0]["nodes"] if n["phase"] != "queued"}
    assert switched and switched <= {f"lab-node-{i:02d}" for i in range(1, 6)}
    for serial in set(before) - switched:  # later batches never saw the broken version
        assert not _log_times(fleet.agent_log(serial), "spec changed, recreating", started)
    fleet.wait("every node healthy on the previous version", fleet.all_healthy, 300)
    assert fleet.api("GET", "/apps/web")["env"] == {"VERSION": "2"}


def _restart_agent(fleet: Fleet, serial: str) -> int:
    """SIGTERM the node's agent (its apps keep running), start it again; the new pid."""
    state = load_state(fleet.lab.dir)
    assert state is not None
    node = state.node(serial)
    agent = node.processes["agent"]
    os.kill(agent.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{agent.pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{agent.pid}/stat").read_text().split(")")[1].split()[0] == "Z":
                break
        time.sleep(0.2)
    node.processes["agent"] = start_agent(state, node, fleet.lab.dir / "bundle")
    save_state(state)
    return node.processes["agent"].pid


def test_an_agent_restart_keeps_the_restart_count_and_the_health_the_gates_read(fleet):
    serial = "lab-node-07"
    uuid = fleet.api("GET", f"/nodes/{serial}")["uuid"]
    containers = json.loads(fleet.lab.podman("ps", "--format", "json"))
    (cid,) = [c["Id"] for c in containers if c["Labels"].get("outpost.node") == uuid]
    fleet.lab.podman("kill", cid)  # the app dies: the agent restarts it and counts it
    fleet.wait(
        "the restart counted and the app healthy again",
        lambda: (
            fleet.app_on(serial).get("restarts") == 1
            and (fleet.app_on(serial).get("health") or {}).get("status") == "healthy"
        ),
        180,
    )
    before = fleet.app_on(serial)
    pid = _restart_agent(fleet, serial)
    state_dir = fleet.lab.dir / "nodes" / serial / "state"

    def new_agent_reported() -> bool:  # its first pass sends an info report, then beats
        beat = read_heartbeat(state_dir)
        return beat is not None and beat.pid == pid and beat.passes >= 2

    fleet.wait("two passes of the new agent", new_agent_reported, 180)
    after = fleet.app_on(serial)
    assert after["restarts"] == before["restarts"] == 1
    assert after["health"] == before["health"]  # not back to "starting": same since
    assert after["last_stop_reason"] == before["last_stop_reason"]


def test_two_nodes_of_a_site_download_at_the_sites_rate_cap_and_the_eta_comes_true(
    fleet: Fleet, tmp_path: Path, built_images: Any
) -> None:
    rate = 800_000.0  # the site's total, bytes/s: 400 kB/s per node
    busybox = built_images.get("busybox").path
    big = padded_oci(busybox, tmp_path / "big.tar", 12_000_000)
    blobs = {sha256_of(busybox): busybox, sha256_of(big): big}
    state = load_state(fleet.lab.dir)
    assert state is not None and state.network is not None
    host = str(state.network.host_ip)
    stop_store = datastore(host, fleet.store_port, blobs, fleet.served)
    try:
        for serial in ("lab-node-19", "lab-node-20"):
            fleet.api("PATCH", f"/nodes/{serial}", json={"labels": {"site": "bw", "bw": "yes"}})
        fleet.api("POST", "/site-policies", json={
            "name": "bw", "selector": {"site": "bw"}, "download_rate_bps": rate,
            "image_base_url": f"http://{host}:{fleet.store_port}"})  # fmt: skip
        with big.open("rb") as fh:
            fleet.api("POST", "/images", params={"name": "big", "format": "oci-archive",
                      "sha256": sha256_of(big)}, data=fh)  # fmt: skip
        bulk = {"name": "bulk", "kind": "container", "image": "busybox",
                "command": ["sleep", "100000"], "selector": {"bw": "yes"}}  # fmt: skip
        fleet.api("POST", "/apps", json=bulk)
        fleet.wait(
            "bulk RUNNING on both nodes",
            lambda: all(
                fleet.app_on(s, "bulk").get("state") == "RUNNING"
                for s in ("lab-node-19", "lab-node-20")
            ),
            300,
        )
        rid, started = _start(
            fleet, {**bulk, "image": "big"}, rings=[{"soak_s": 2, "deadline_s": 300}]
        )
        view = fleet.api("GET", f"/rollouts/{rid}")
        fleet.wait("the rollout's first step", lambda: fleet.api(
            "GET", f"/rollouts/{rid}")["rings"][0]["nodes"] != [], 30)  # fmt: skip
        view = fleet.api("GET", f"/rollouts/{rid}")
        expected = view["expected_completion"] - started
        waits = [n["waiting"] for n in view["rings"][0]["nodes"]]
        assert all(w.startswith("pre-fetching the new image") for w in waits), waits
        r = fleet.finish(rid, 600)
        assert r["state"] == "succeeded", r["reason"]
        real = time.time() - started
        measured, _ = fleet.served.rate(sha256_of(big))
        print(f"\nsite cap {rate:.0f} B/s, served {measured:.0f} B/s;"
              f" expected completion {expected:.1f} s, real {real:.1f} s")  # fmt: skip
        assert measured == pytest.approx(rate, rel=0.15)
        assert expected == pytest.approx(real, rel=0.20)
    finally:
        stop_store()
