"""Firewall apply time and an outside port scan, in network namespaces (root needed).

A node namespace runs ``NodeNetwork`` (two app networks, a container-kind app whose
namespace gets a listener on :80, node daemons listening on 22/80/443/8000/9090); an
outside namespace scans it. Measures:

- ``nft -f`` replace of the agent's table (the atomic step), small and with 64 port maps;
- a whole ``NodeNetwork.apply`` for a config change that adds/removes a port map;
- a whole ``apply`` with nothing changed (the per-pass cost);
- from the start of ``apply`` until the new port answers from the outside namespace;
- the scan: TCP connect to every port (1-65535 with ``--full-scan``, else 1-1024 and a few).

    .venv/bin/python -m benchmarks.firewall_apply [--n 40] [--full-scan]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from node_agent.network import NetworkSettings, NodeNetwork
from node_agent.network.plan import app_netns
from protocol.desired_state import DesiredState
from tests.fixtures.netns import (
    IP,
    app_doc,
    desired_doc,
    listeners,
    make_site,
    namespaces,
    ns_run,
    tcp_scan,
)

NODE_SERVICES = [22, 80, 443, 8000, 9090]
_PROBE = r"""
import socket, sys, time
host, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sys.stdin.readline()  # go
start = time.perf_counter()
while time.perf_counter() - start < limit:
    s = socket.socket(); s.settimeout(0.05)
    try:
        s.connect((host, port)); print(time.perf_counter() - start); break
    except OSError:
        time.sleep(0.0005)
    finally:
        s.close()
else:
    print("timeout")
"""


def _doc(node: str, generation: int, mapped: bool, extra_maps: int = 0) -> DesiredState:
    ports = [{"host": 8080, "guest": 80}] if mapped else []
    ports += [{"host": 20000 + i, "guest": 1000 + i} for i in range(extra_maps)]
    return DesiredState.model_validate(
        desired_doc(
            node,
            generation,
            networks=[
                {"name": "site-a", "subnet": "10.81.0.0/24", "nat": True},
                {"name": "site-b", "subnet": "10.82.0.0/24"},
            ],
            apps=[
                app_doc("web", networks=[{"name": "site-a", "ports": ports}]),
                app_doc("other", networks=[{"name": "site-b"}]),
            ],
        )
    )


def _stats(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p90 = ms[max(0, int(len(ms) * 0.9) - 1)]
    p50 = statistics.median(ms)
    return f"{name:52} n={len(ms):3}  p50 {p50:7.2f} ms  p90 {p90:7.2f}  max {ms[-1]:7.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--full-scan", action="store_true")
    args = parser.parse_args()
    node = str(uuid.uuid4())
    with namespaces() as make, tempfile.TemporaryDirectory() as tmp:
        site = make_site(make)
        net = NodeNetwork(NetworkSettings(state_dir=Path(tmp), netns=site.node), node)
        try:
            net.apply(_doc(node, 1, mapped=False))
            web_ns = app_netns(node, _doc(node, 1, False).apps[0].uuid)
            replace_ms, apply_ms, idle_ms, reach_ms = [], [], [], []
            with listeners(web_ns, [80]), listeners(site.node, NODE_SERVICES):
                generation = 1
                for i in range(args.n):
                    generation += 1
                    mapped = i % 2 == 0
                    probe = None
                    if mapped:
                        probe = _start_probe(site.outside, site.node_ip)
                    t0 = time.perf_counter()
                    net.apply(_doc(node, generation, mapped))
                    apply_ms.append((time.perf_counter() - t0) * 1000)
                    replace_ms.append((net.record.ruleset_seconds or 0) * 1000)
                    if probe is not None:
                        reach_ms.append(_finish_probe(probe))
                    t0 = time.perf_counter()
                    net.apply(_doc(node, generation, mapped))
                    idle_ms.append((time.perf_counter() - t0) * 1000)
                big_ms = []
                for i in range(max(4, args.n // 4)):
                    generation += 1
                    net.apply(_doc(node, generation, True, extra_maps=63 if i % 2 else 62))
                    big_ms.append((net.record.ruleset_seconds or 0) * 1000)
                net.apply(_doc(node, generation + 1, mapped=True))
                ports = list(range(1, 65536)) if args.full_scan else [*range(1, 1025), 8080, 9090]
                scan: dict[int, str] = {}
                for start in range(0, len(ports), 4000):
                    scan.update(
                        tcp_scan(site.outside, site.node_ip, ports[start : start + 4000], 1.5)
                    )
            rules = ns_run(site.node, "nft", "list", "table", "inet", "outpost").stdout.count("\n")
        finally:
            net.teardown()
    print(_stats("nft -f replace (2 networks, 0-1 port map)", replace_ms))
    print(_stats("nft -f replace (2 networks, 63-64 port maps)", big_ms))
    print(_stats("NodeNetwork.apply, a port map added/removed", apply_ms))
    print(_stats("NodeNetwork.apply, nothing changed (per-pass cost)", idle_ms))
    print(_stats("apply start -> new port answers from outside", reach_ms))
    opened = sorted(p for p, s in scan.items() if s == "open")
    counts = {s: sum(1 for v in scan.values() if v == s) for s in ("open", "closed", "filtered")}
    print(f"scan of {len(ports)} TCP ports from outside: open {opened}; {counts}")
    print(f"node daemons listening on {NODE_SERVICES} (all filtered); table lines: {rules}")
    return 0


def _start_probe(ns: str, host: str):  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(
        [IP, "netns", "exec", ns, sys.executable, "-c", _PROBE, host, "8080", "5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.2)  # let the interpreter start before the apply begins
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc


def _finish_probe(proc) -> float:  # type: ignore[no-untyped-def]
    out, _ = proc.communicate(timeout=30)
    return float(out.strip()) * 1000 if out.strip() != "timeout" else float("nan")


if __name__ == "__main__":
    socket.setdefaulttimeout(5)
    raise SystemExit(main())
