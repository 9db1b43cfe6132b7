"""Remote sessions behind HAProxy across two controller replicas on one PostgreSQL.

HAProxy terminates TLS and sends ``/api/v1/remote/s/`` to a backend that hashes the first
five path segments (``balance uri depth 5``), so the node's and the operator's WebSocket of
one session meet on one replica (docs/deploy.md).  When that replica dies, the session
ends cleanly: the operator's client says the relay was lost, the node closes what it
opened and reports the end through the other replica, which records why; the recording
holds everything the operator was shown.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from controller.cli import main as controller_main
from outpost_cli.remote_stream import LOST, Outcome, RelayLost, open_session, receive
from protocol.remote import STDIN, data_frame, split_frame
from tests.fixtures.controller_server import ControllerServer, free_port
from tests.fixtures.remote_site import SimNode, add_apps, add_sim_node

pytestmark = pytest.mark.integration

HAPROXY_CFG = """
global
    maxconn 2000
    log stdout format raw local0 info
defaults
    mode http
    log global
    option httplog
    retries 3
    option redispatch
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout tunnel 1h
    option httpchk GET /healthz
frontend outpost
    bind 127.0.0.1:{port} ssl crt {pem}
    use_backend remote_sessions if {{ path_beg /api/v1/remote/s/ }}
    default_backend controllers
backend controllers
    balance roundrobin
    server a 127.0.0.1:{a} check inter 500ms fall 1 rise 1
    server b 127.0.0.1:{b} check inter 500ms fall 1 rise 1
backend remote_sessions
    balance uri depth 5
    hash-type consistent
    server a 127.0.0.1:{a} check inter 500ms fall 1 rise 1
    server b 127.0.0.1:{b} check inter 500ms fall 1 rise 1
"""


@dataclass
class Replicas:
    ctl: ControllerServer
    procs: dict[int, subprocess.Popen[bytes]]
    """Replica port → its gunicorn arbiter (a process group of its own)."""


def _serve(data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "--data-dir", str(data), "serve", "--port",
         str(port), "--plain-http", "--trusted-proxies", "1"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _healthy(url: str, **kw: object) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2, **kw).ok  # type: ignore[arg-type]
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def replicas(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy is not installed")
    from tests.fixtures.postgres import fresh_database

    base = tmp_path_factory.mktemp("remote-replicas")
    with fresh_database(postgres_server) as db_url:
        data, token_file = base / "controller", base / "token"
        port, a, b = free_port(), free_port(), free_port()
        assert controller_main(["--data-dir", str(data), "init", "--db-url", db_url,
                                "--public-url", f"https://127.0.0.1:{port}",
                                "--token-file", str(token_file),
                                # the simulated node is TPM-less and claimed by serial
                                "--allow-unpinned-claims", "--tpm-less", "allow"]) == 0  # fmt: skip
        pem = base / "haproxy.pem"
        pem.write_text((data / "pki/tls.pem").read_text() + (data / "pki/tls.key").read_text())
        (base / "haproxy.cfg").write_text(HAPROXY_CFG.format(port=port, pem=pem, a=a, b=b))
        procs = {p: _serve(data, p, base / f"replica-{p}.log") for p in (a, b)}
        haproxy = subprocess.Popen(
            ["haproxy", "-f", str(base / "haproxy.cfg"), "-db"],
            stdout=(base / "haproxy.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not all(_healthy(f"http://127.0.0.1:{p}") for p in (a, b)):
                assert time.monotonic() < deadline, "the replicas did not start"
                time.sleep(0.2)
            url = f"https://127.0.0.1:{port}"
            while not _healthy(url, verify=str(data / "pki/root-ca.pem")):
                assert time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.2)
            ctl = ControllerServer(data, url, token_file.read_text().strip(), haproxy)
            yield Replicas(ctl, procs)
        finally:
            haproxy.terminate()
            haproxy.wait(10)
            for proc in procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(20)


@pytest.fixture(scope="module")
def node(replicas: Replicas, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimNode]:
    ctl = replicas.ctl
    add_apps(ctl, {"web": "container"})
    sim = add_sim_node(ctl, tmp_path_factory.mktemp("sim"), "replica-node", ["web"])
    sim.start()
    try:
        yield sim
    finally:
        sim.stop.set()


def _call(ctl: ControllerServer):  # type: ignore[no-untyped-def]
    def call(method: str, path: str, **kw):  # type: ignore[no-untyped-def]
        r = ctl.api(method, path, **kw)
        assert r.status_code < 400, r.text
        return r.json()

    return call


def _echo_session(ctl: ControllerServer, text: bytes):  # type: ignore[no-untyped-def]
    grant = ctl.api("POST", "/remote/grants", json={"node": "replica-node", "kind": "exec",
                                                     "app": "web"}).json()["id"]  # fmt: skip
    view, ws = open_session(_call(ctl), ctl.url, str(ctl.root_ca),
                            {"grant": grant, "command": ["cat"], "tty": False})  # fmt: skip
    ws.send(data_frame(STDIN, text))
    while True:
        # hang detection, not a speed check: a wakeup that does not cross replicas
        # still reaches the node at its next poll (20 s); benchmarks/remote_access.py
        # measures the latency
        message = ws.recv(timeout=60)
        if isinstance(message, bytes) and split_frame(message)[1] == text:
            return view, ws


def test_both_sides_of_a_session_meet_through_the_balancer(replicas: Replicas, node: SimNode):
    ctl = replicas.ctl
    for i in range(4):  # sessions hash to either replica: each must work
        view, ws = _echo_session(ctl, f"hello-{i}\n".encode())
        ws.close()
        assert view["id"]


def test_a_session_ends_cleanly_when_its_replica_dies_and_keeps_its_recording(
    replicas: Replicas, node: SimNode
):
    ctl = replicas.ctl
    view, ws = _echo_session(ctl, b"shown-before-the-kill\n")
    relay = ctl.api("GET", f"/remote/sessions/{view['id']}").json()["relay"]
    worker_pid = int(relay.rsplit(":", 1)[1])
    victim = next(p for p in replicas.procs.values() if os.getpgid(worker_pid) == p.pid)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)

    with pytest.raises(RelayLost) as lost:
        receive(ws, io.BytesIO(), io.BytesIO(), Outcome())
    assert str(lost.value) == LOST

    # Either the node reports its broken connection, or the surviving replica finds the
    # relaying process gone first: both end the session with a reason naming the lost relay.
    # (HAProxy may answer 502/503 while it has not yet marked the killed replica down)
    deadline = time.monotonic() + 30
    ended: dict = {}  # type: ignore[type-arg]
    while ended.get("state") != "ended":
        assert time.monotonic() < deadline, ended
        shown = ctl.api("GET", f"/remote/sessions/{view['id']}")
        if shown.status_code == 200:
            ended = shown.json()
        time.sleep(0.2)
    reason = ended["end_reason"]
    assert "connection to the controller broke" in reason or (
        f"the controller process relaying it ({relay}) stopped" in reason
    ), reason
    cast = ctl.api("GET", f"/remote/sessions/{view['id']}/recording")
    assert cast.status_code == 200
    assert "shown-before-the-kill" in cast.text
    print(f"\nended: {ended['end_reason']!r} after the relay {relay} was killed")
