"""The benchmarks' production-shaped rig: a private PostgreSQL, N controller replicas on it
and HAProxy terminating TLS in front (tests/fixtures/cluster.py), plus per-part CPU and
memory sampling (controllers, HAProxy, PostgreSQL, this process = the simulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.simulator.procstat import ProcSample, sample
from benchmarks.simulator.stats import render_table
from deploy.render_haproxy import BackendScheme
from tests.fixtures.cluster import Cluster, running_cluster
from tests.fixtures.postgres import fresh_database, private_postgres, server_pids

__all__ = ["Rig", "Usage", "bench_rig"]


@dataclass
class Rig:
    cluster: Cluster
    pg_url: str
    pg_pids: list[int] = field(default_factory=list)
    simulator_pids: list[int] = field(default_factory=lambda: [os.getpid()])
    """The simulator's processes (this one unless the nodes run in others)."""

    def parts(self) -> dict[str, list[int]]:
        assert self.cluster.lb is not None
        if not self.pg_pids:
            self.pg_pids = server_pids(self.pg_url)  # the postmaster (its children counted)
        return {
            "controllers": self.cluster.pids(),
            "haproxy": [self.cluster.lb.process.pid],
            "postgresql": self.pg_pids,
            "simulator": self.simulator_pids,
        }

    def sample(self) -> dict[str, ProcSample]:
        return {
            name: sample(pids, children=name != "simulator" or pids != [os.getpid()])
            for name, pids in self.parts().items()
        }


@dataclass
class Usage:
    """CPU (% of one core) and peak RSS of each part over an interval."""

    cpu_percent: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    start_rss: dict[str, int] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        rows = [
            (
                name,
                f"{self.cpu_percent[name]:.0f}",
                f"{self.start_rss[name] / 2**20:.0f}",
                f"{self.peak_rss[name] / 2**20:.0f}",
                self.threads.get(name, 0),
            )
            for name in self.cpu_percent
        ]
        return render_table(
            ("process", "CPU % of a core", "RSS start MiB", "RSS peak MiB", "threads"), rows
        )


async def watch_usage(rig: Rig, stop: asyncio.Event, every_s: float = 1.0) -> Usage:
    """Sample every part until ``stop`` is set; CPU over the whole span, RSS at peak."""
    first = rig.sample()
    usage = Usage(start_rss={k: v.rss_bytes for k, v in first.items()})
    usage.peak_rss = dict(usage.start_rss)
    last = first
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        last = rig.sample()
        for name, s in last.items():
            usage.peak_rss[name] = max(usage.peak_rss.get(name, 0), s.rss_bytes)
            usage.threads[name] = max(usage.threads.get(name, 0), s.threads)
    usage.cpu_percent = {name: last[name].cpu_percent(first[name]) for name in first}
    return usage


@contextlib.contextmanager
def bench_rig(
    base: Path,
    replicas: int = 1,
    scheme: BackendScheme = "https",
    max_connections: int = 200,
    serve_args: tuple[str, ...] = (),
) -> Iterator[Rig]:
    """PostgreSQL + ``replicas`` controllers + HAProxy under ``base``, torn down after."""
    t0 = time.monotonic()
    with (
        private_postgres(max_connections=max_connections) as server,
        fresh_database(server) as db_url,
        running_cluster(
            base, db_url, replicas=replicas, scheme=scheme, serve_args=serve_args
        ) as cluster,
    ):
        print(
            f"rig up in {time.monotonic() - t0:.1f} s: PostgreSQL, {replicas} controller"
            f" replica(s) ({scheme} backends), HAProxy at {cluster.url}",
            flush=True,
        )
        yield Rig(cluster, server)
