"""What the simulator itself costs per request: simulated nodes poll config (and send
metrics) through TLS to a private HAProxy that answers every device call with a canned
'unchanged' (no controller), so all the CPU measured is the client's: signing the
envelope, JSON, aiohttp, TLS records, the event loop.

    .venv/bin/python -m benchmarks.simulator_cost [--nodes 2000] [--interval 1] [--seconds 20]

Prints requests/s reached against the target, the simulator's CPU per request and the
projected cores the simulator needs for 100,000 nodes at EVE's timers (a config poll and
a metrics report every 60 s each). The scale benchmark's simulator runs on the same
cores as the controller: this is its share.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import pki
from benchmarks.simulator.fleet import Fleet, FleetSettings
from benchmarks.simulator.node import ConfigCheck
from benchmarks.simulator.procstat import sample
from benchmarks.simulator.runner import DEFAULT_CACHE, load_identities, raise_fd_limit
from benchmarks.simulator.stats import Stats, render_table
from benchmarks.simulator.transport import Transport, TransportSettings
from tests.fixtures.controller_server import free_port

CANNED = """global
    maxconn 9000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
frontend canned
    bind 127.0.0.1:{port} ssl crt {cert} alpn http/1.1
    http-request return status 200 content-type application/json string "{{\\"unchanged\\":true}}"
"""


@contextlib.contextmanager
def canned_haproxy(base: Path) -> Iterator[tuple[str, Path]]:
    """HAProxy answering every request itself, TLS with a cert under a fresh root."""
    root = pki.make_ca("simulator cost root")
    leaf = pki.issue_cert(root, "lb", usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=["127.0.0.1"])
    key = leaf.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (base / "lb.pem").write_bytes(leaf.cert_pem().encode() + key)
    (base / "root.pem").write_text(root.cert_pem())
    port = free_port()
    (base / "haproxy.cfg").write_text(CANNED.format(port=port, cert=base / "lb.pem"))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    proc = subprocess.Popen([haproxy, "-db", "-f", str(base / "haproxy.cfg")])
    try:
        time.sleep(0.5)
        yield f"https://127.0.0.1:{port}", base / "root.pem"
    finally:
        proc.terminate()
        proc.wait(10)


async def _run(url: str, root: Path, args: argparse.Namespace) -> tuple[Stats, float]:
    identities = load_identities(args.nodes, "cost", args.cache).identities
    settings = TransportSettings(url, root, connections=args.connections)
    async with Transport(settings, Stats()) as t:
        fleet = Fleet(
            identities,
            t,
            ConfigCheck("hash"),
            FleetSettings(
                config_interval_s=args.interval,
                metrics_interval_s=args.interval if args.metrics else 0.0,
                info_interval_s=0.0,
            ),
        )
        for node in fleet.nodes:  # as if enrolled: the canned answers check nothing
            node.node_uuid, node.token, node.token_renew_at = str(uuid.uuid4()), "t", 1e18
        fleet.enrolled = list(fleet.nodes)
        fleet.start()
        await asyncio.sleep(args.interval * 1.5)  # warm: connections opened
        fleet.new_phase()
        before = sample([os.getpid()], children=False)
        await asyncio.sleep(args.seconds)
        after = sample([os.getpid()], children=False)
        stats = fleet.new_phase()
        await fleet.stop()
    return stats, after.cpu_s - before.cpu_s


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=2000)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=500)
    p.add_argument("--metrics", action="store_true", help="also a metrics report per interval")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = p.parse_args()
    raise_fd_limit()
    with tempfile.TemporaryDirectory() as tmp, canned_haproxy(Path(tmp)) as (url, root):
        stats, cpu_s = asyncio.run(_run(url, root, args))
    done = sum(stats.count(k) for k in stats.kinds())
    per_req_ms = 1000 * cpu_s / max(done, 1)
    target = args.nodes / args.interval * (2 if args.metrics else 1)
    cores_100k = 100_000 * 2 / 60 * per_req_ms / 1000
    print(
        render_table(
            (
                "nodes",
                "target req/s",
                "req/s",
                "errors",
                "p50 ms",
                "p99 ms",
                "simulator CPU ms/req",
                "cores for 100k nodes @60 s",
            ),
            [
                (
                    args.nodes,
                    f"{target:.0f}",
                    f"{done / stats.elapsed_s:.0f}",
                    stats.error_count(),
                    f"{stats.summary('config').p50_ms:.1f}",
                    f"{stats.summary('config').p99_ms:.1f}",
                    f"{per_req_ms:.3f}",
                    f"{cores_100k:.2f}",
                )
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
