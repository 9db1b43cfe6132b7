"""Remote access: keystroke round trip through the controller, port-forward throughput.

    keystroke (VM console)   a real controller process (gunicorn) and agent process, the tiny
                             test VM under libvirt/QEMU; the operator sends one character to
                             the VM's serial console and waits for its echo (operator →
                             controller → agent → libvirt console → guest shell → back);
                             floor in the same run: the same keystroke through libvirt's
                             console stream on the node itself (no controller)
    keystroke (exec -t)      the same through ``exec -t sh`` on a pty (simulated node running
                             the agent's remote service; no VM) vs the same pty directly
    port-forward             bytes of a TCP download through a forward (operator → controller
                             → agent → app port) vs the same download directly

    .venv/bin/python -m benchmarks.remote_access [--keys 200] [--mib 256] [--no-vm]

Prints a table; results go into docs/benchmarks.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from node_agent.remote.endpoints import LibvirtConsole, PtyCommand
from node_agent.runtime.vm_policy import domain_name
from outpost_cli.remote_stream import open_session
from protocol.remote import STDIN, data_frame, split_frame
from tests.fixtures.controller_server import ControllerServer, running_controller
from tests.fixtures.remote_site import add_apps, add_sim_node


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _call(ctl: Any) -> Callable[..., Any]:
    def call(method: str, path: str, **kw: Any) -> Any:
        r = ctl.api(method, path, **kw)
        r.raise_for_status()
        return r.json()

    return call


def _keystrokes(
    send: Callable[[bytes], None], recv: Callable[[float], bytes], n: int
) -> list[float]:
    """Round trips of one typed character until its echo comes back (ms)."""
    times = []
    for i in range(n):
        ch = b"abcdefghij"[i % 10 : i % 10 + 1]
        start = time.perf_counter()
        send(ch)
        seen = b""
        while ch not in seen:
            seen += recv(5.0)
        times.append((time.perf_counter() - start) * 1000)
        if i % 40 == 39:
            send(b"\x15")  # ^U: clear the line
            recv(0.3)
    return times


def _ws_io(ws: Any) -> tuple[Callable[[bytes], None], Callable[[float], bytes]]:
    def send(data: bytes) -> None:
        ws.send(data_frame(STDIN, data))

    def recv(timeout: float) -> bytes:
        out = b""
        with contextlib.suppress(TimeoutError):
            message = ws.recv(timeout=timeout)
            if isinstance(message, bytes):
                out = split_frame(message)[1]
        return out

    return send, recv


def _endpoint_io(ep: Any) -> tuple[Callable[[bytes], None], Callable[[float], bytes]]:
    box: list[bytes] = []
    cond = threading.Condition()

    def reader() -> None:
        while (item := ep.read()) is not None:
            with cond:
                box.append(item[1])
                cond.notify_all()

    threading.Thread(target=reader, daemon=True).start()

    def recv(timeout: float) -> bytes:
        with cond:
            cond.wait_for(lambda: box, timeout)
            data = b"".join(box)
            box.clear()
            return data

    return ep.write, recv


def bench_exec_tty(ctl: ControllerServer, n: int) -> dict[str, list[float]]:
    grant = ctl.api(
        "POST", "/remote/grants", json={"node": "bench-node", "kind": "exec", "app": "web"}
    ).json()
    _view, ws = open_session(
        _call(ctl),
        ctl.url,
        str(ctl.root_ca),
        {"grant": grant["id"], "command": ["sh"], "tty": True},
    )
    send, recv = _ws_io(ws)
    recv(1.0)
    relayed = _keystrokes(send, recv, n)
    ws.close()
    direct_ep = PtyCommand(["sh"], 80, 24)
    d_send, d_recv = _endpoint_io(direct_ep)
    d_recv(0.5)
    direct = _keystrokes(d_send, d_recv, n)
    direct_ep.close()
    return {"relayed": relayed, "direct": direct}


def bench_forward(ctl: ControllerServer, node: Any, mib: int) -> dict[str, float]:
    payload = os.urandom(1024 * 1024)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                for _ in range(mib):
                    conn.sendall(payload)

    threading.Thread(target=serve, daemon=True).start()

    def drain(sock: socket.socket) -> float:
        start, got = time.perf_counter(), 0
        while got < mib * len(payload):
            data = sock.recv(1 << 20)
            if not data:
                break
            got += len(data)
        return got / (time.perf_counter() - start) / 1e6

    with socket.create_connection(("127.0.0.1", port)) as direct:
        direct_mbs = drain(direct)
    node.remote.ctx.app_address = lambda _uuid: "127.0.0.1"
    grant = ctl.api(
        "POST",
        "/remote/grants",
        json={"node": "bench-node", "kind": "forward", "app": "web", "port": port},
    ).json()
    _view, ws = open_session(_call(ctl), ctl.url, str(ctl.root_ca), {"grant": grant["id"]})
    start, got = time.perf_counter(), 0
    while got < mib * len(payload):
        message = ws.recv(timeout=30)
        if isinstance(message, bytes):
            got += len(split_frame(message)[1])
    relayed_mbs = got / (time.perf_counter() - start) / 1e6
    ws.close()
    return {"direct": direct_mbs, "relayed": relayed_mbs}


@contextlib.contextmanager
def vm_site(base: Path) -> Iterator[Any]:
    """The e2e harness: controller + agent processes, the test VM running."""
    from images.build import build_all
    from node_agent.runtime.hypervisor_probe import probe_accel
    from tests.fixtures.e2e import e2e_node
    from tests.fixtures.images import IMAGES_DIR
    from tests.fixtures.podman_engine import make_engine

    images = build_all(IMAGES_DIR)
    (base / "podman").mkdir(parents=True, exist_ok=True)
    engine = make_engine(base / "podman")
    accel = probe_accel(base / "probe", "auto")
    with e2e_node(base / "e2e", "bench-vm-node", images, engine, "qemu:///system", accel) as node:
        node.api(
            "POST",
            "/apps",
            json={"name": "v1", "kind": "vm", "image": "testvm", "resources": {"memory_mib": 96}},
        ).raise_for_status()
        node.api("POST", "/nodes/bench-vm-node/apps", json={"app": "v1"}).raise_for_status()
        node.start_agent()
        node.wait_states({"v1": "RUNNING"})
        yield node


def bench_vm_console(node: Any, n: int) -> dict[str, list[float]]:
    grant = node.api(
        "POST", "/remote/grants", json={"node": "bench-vm-node", "kind": "console", "app": "v1"}
    ).json()
    _view, ws = open_session(_call(node), node.url, str(node.root_ca), {"grant": grant["id"]})
    send, recv = _ws_io(ws)
    deadline = time.monotonic() + 120
    while b"ready-42" not in recv(1.0):  # the guest's shell answers
        assert time.monotonic() < deadline, "no shell on the VM console"
        send(b"echo ready-$((6*7))\r")
    relayed = _keystrokes(send, recv, n)
    ws.close()
    time.sleep(1.0)
    app_uuid = node.api("GET", "/apps/v1").json()["uuid"]
    console = LibvirtConsole("qemu:///system", domain_name(node.uuid, app_uuid))
    d_send, d_recv = _endpoint_io(console)
    d_send(b"\r")
    d_recv(1.0)
    direct = _keystrokes(d_send, d_recv, n)
    console.close()
    return {"relayed": relayed, "direct": direct}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--no-vm", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="outpost-bench-remote-", dir="/tmp"))
    rows: list[tuple[str, str, str, str]] = []
    with running_controller(base / "sim") as ctl:
        add_apps(ctl, {"web": "container"})
        node = add_sim_node(ctl, base, "bench-node", ["web"])
        node.start()
        try:
            keys = bench_exec_tty(ctl, args.keys)
            fwd = bench_forward(ctl, node, args.mib)
        finally:
            node.stop.set()
    for name, key in (("keystroke exec -t (pty)", keys),):
        r, d = key["relayed"], key["direct"]
        rows.append(
            (
                name,
                f"{statistics.median(r):.2f} / {_pct(r, 0.99):.2f}",
                f"{statistics.median(d):.2f} / {_pct(d, 0.99):.2f}",
                f"{statistics.median(r) / statistics.median(d):.1f}x",
            )
        )
    if not args.no_vm:
        with vm_site(base / "vm") as vm:
            con = bench_vm_console(vm, args.keys)
        r, d = con["relayed"], con["direct"]
        rows.insert(
            0,
            (
                "keystroke VM serial console",
                f"{statistics.median(r):.2f} / {_pct(r, 0.99):.2f}",
                f"{statistics.median(d):.2f} / {_pct(d, 0.99):.2f}",
                f"{statistics.median(r) / statistics.median(d):.1f}x",
            ),
        )
    rows.append(
        (
            f"port-forward download ({args.mib} MiB)",
            f"{fwd['relayed']:.0f} MB/s",
            f"{fwd['direct']:.0f} MB/s",
            f"{fwd['relayed'] / fwd['direct']:.3f}",
        )
    )
    today = time.strftime("%Y-%m-%d")
    print(f"\nremote access, {args.keys} keystrokes; {today}; {os.cpu_count()} cores")
    header = (
        "path",
        "through the controller (p50 / p99 ms)",
        "direct on the node (floor)",
        "ratio",
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    subprocess.run(["rm", "-rf", str(base)], check=False)


if __name__ == "__main__":
    main()
