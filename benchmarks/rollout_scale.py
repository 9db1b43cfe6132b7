"""Rollout at scale: one app version rolled out to N simulated nodes with batches and a
disruption budget per site, the engine's steps timed and its database writes counted.

    .venv/bin/python -m benchmarks.rollout_scale --nodes 1000 [--sites 10] [--budget 10]
        [--soak 5] [--long-poll 30] [--keep DIR]

The rig is production-shaped (PostgreSQL, a controller replica behind HAProxy, the
simulator's nodes long-polling through it); the replica runs without its background jobs
(``serve --no-background``) and this process runs the rollout engine instead, once a
second as the background job would, so each step can be timed (wall and CPU) and its
statements counted (SQLAlchemy events: rows inserted, updated and deleted).  The nodes run
in a process of their own (``benchmarks.simulator``): they report every app of their config
RUNNING and every pre-fetch done.  Rings: a 10 % canary in 2 batches, then the rest in
batches of 25 %; a budget of ``--budget`` nodes updating per site.

Printed, with the floor or peer measured in the same run and the ratio:

    plan a step        engine step wall time (p50, p95, max) vs the bare read of the
                       current batch (one SELECT of its rows and nodes)
    engine writes      rows written by the engine per node vs the 4 a node needs
                       (queued row, pin, switched, decided)
    all writes         rows PostgreSQL wrote during the rollout per node (device API too)
    controller CPU     the serving replica during the rollout vs the same fleet idle
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, select

from benchmarks.rig import Rig, bench_rig
from benchmarks.simulator.fleet import FleetSettings
from benchmarks.simulator.identities import IdentityCache
from benchmarks.simulator.procstat import sample
from benchmarks.simulator.runner import (
    DEFAULT_CACHE,
    SimulationSpec,
    load_identities,
    onboarding_identity,
    open_fleet,
)
from benchmarks.simulator.stats import render_table
from controller.app import build_services
from controller.cli import _settings
from controller.domain.status import app_status, reported_generation
from controller.rollouts.engine import tick
from controller.services import Services
from controller.store.models import App, Node, Rollout, RolloutNode

PREFIX = "rollout"
APP = "bench"
MIN_WRITES_PER_NODE = 4


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--sites", type=int, default=10)
    p.add_argument("--budget", type=int, default=10, help="nodes updating at once per site")
    p.add_argument("--soak", type=float, default=5.0)
    p.add_argument("--long-poll", type=float, default=30.0)
    p.add_argument("--idle", type=float, default=20.0, help="seconds of the idle peer")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--keep", type=Path)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    return p.parse_args()


def _nodes_process(bundle: Path, url: str, token: str, count: int, long_poll: float,
                   cache: Path, ready: Any, stop: Any) -> None:  # fmt: skip
    """The simulated fleet: enrol every node, then long-poll and report until ``stop``."""

    async def run() -> None:
        spec = SimulationSpec(
            bundle,
            IdentityCache(cache, PREFIX).load(count),
            token=token,
            url=url,
            fleet=FleetSettings(long_poll_s=long_poll, metrics_interval_s=0, info_interval_s=0),
        )
        async with open_fleet(spec) as fleet:
            enrolled = await fleet.enrol(onboarding_identity(bundle), claim=False)
            fleet.start()
            ready.put(len(enrolled))
            await asyncio.to_thread(stop.wait)

    asyncio.run(run())


class Writes:
    """Rows the engine's statements insert, update or delete (SQLAlchemy events)."""

    def __init__(self, services: Services) -> None:
        self.rows = 0
        event.listen(services.db.engine, "after_cursor_execute", self._after)

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.rows += max(cursor.rowcount, 0)


def _setup(rig: Rig, nodes: int, sites: int) -> None:
    """Before any node enrols: TPM-less nodes allowed, the images, the app, and every
    serial claimed and labelled with its site (no node polls yet, so nothing is woken)."""
    api = rig.cluster.api
    assert api("PATCH", "/trust/policy", json={"tpm_less": "allow"}).status_code == 200
    for name, digit in (("v1", "1"), ("v2", "2")):
        r = api("POST", "/images/register", json={
            "name": f"bench-{name}", "format": "oci-archive", "sha256": digit * 64,
            "size": 10_000_000, "url": f"http://127.0.0.1:9/{name}"})  # fmt: skip
        assert r.status_code == 201, r.text
    app = {"name": APP, "kind": "container", "image": "bench-v1", "selector": {"fleet": "sim"}}
    assert api("POST", "/apps", json=app).status_code == 201

    def label(i: int) -> None:
        serial = f"{PREFIX}-{i:06d}"
        assert api("POST", "/nodes/claim", json={"serial": serial}).status_code in (200, 201)
        body = {"labels": {"fleet": "sim", "site": f"site-{i % sites:02d}"}}
        r = api("PATCH", f"/nodes/{serial}", json=body)
        assert r.status_code == 200, r.text

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(label, range(nodes)))


def _running(services: Services, image: str) -> int:
    """Nodes that report the app RUNNING from ``image`` at their newest generation."""
    with services.db.transaction() as s:
        app = s.scalar(select(App).where(App.name == APP))
        assert app is not None
        count = 0
        for node in s.scalars(select(Node).where(Node.state == "registered")):
            status = app_status(node, app.uuid)
            if (
                status is not None
                and status.state == "RUNNING"
                and status.image_sha256 == image
                and reported_generation(node) == node.config_generation
            ):
                count += 1
        return count


def _wait(what: str, check: Any, want: int, timeout: float) -> float:
    t0 = time.monotonic()
    while (got := check()) < want:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"timed out waiting for {what}: {got}/{want}")
        time.sleep(1.0)
    return time.monotonic() - t0


def _pg_writes(url: str) -> int:
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables"
        ).fetchone()
    return int(row[0] or 0) if row else 0


def _floor_read(services: Services, rid: int) -> float:
    """The bare read of the current batch: its rows and their nodes (seconds)."""
    t0 = time.perf_counter()
    with services.db.transaction() as s:
        r = s.get(Rollout, rid)
        assert r is not None
        rows = s.scalars(
            select(RolloutNode).where(RolloutNode.rollout_id == rid, RolloutNode.ring == r.ring)
        ).all()
        ids = [row.node_id for row in rows if row.batch == r.batch]
        list(s.scalars(select(Node).where(Node.id.in_(ids))))
    return time.perf_counter() - t0


def _rollout(rig: Rig, services: Services, args: argparse.Namespace) -> dict[str, Any]:
    ring = {"soak_s": args.soak, "deadline_s": 900}
    body = {
        "app": {
            "name": APP,
            "kind": "container",
            "image": "bench-v2",
            "selector": {"fleet": "sim"},
        },
        "rings": [
            {**ring, "name": "canary", "percent": 10, "batches": {"percent": 50}},
            {**ring, "name": "rest", "batches": {"percent": 25}},
        ],
        "budgets": [{"group_by": ["site"], "max_updating": args.budget}],
    }
    r = rig.cluster.api("POST", "/rollouts", json=body)
    assert r.status_code == 201, r.text
    rid = int(r.json()["id"])
    writes = Writes(services)
    steps: list[float] = []
    cpu: list[float] = []
    floors: list[float] = []
    pg0, ctl0, t0 = _pg_writes(rig.cluster.db_url), sample(rig.cluster.pids()), time.monotonic()
    state = "progressing"
    while state in ("progressing", "awaiting_approval"):
        if time.monotonic() - t0 > args.timeout:
            raise SystemExit(f"the rollout did not finish in {args.timeout:.0f} s")
        w0, c0 = time.perf_counter(), time.thread_time()
        tick(services)
        steps.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0)
        floors.append(_floor_read(services, rid))
        with services.db.transaction() as s:
            found = s.get(Rollout, rid)
            assert found is not None
            state, reason = found.state, found.reason
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - w0)))
    took = time.monotonic() - t0
    ctl = sample(rig.cluster.pids()).cpu_percent(ctl0)
    if state != "succeeded":
        raise SystemExit(f"the rollout ended {state}: {reason}")
    return {
        "took_s": took,
        "steps": steps,
        "cpu": cpu,
        "floors": floors,
        "engine_rows": writes.rows,
        "pg_rows": _pg_writes(rig.cluster.db_url) - pg0,
        "controller_cpu": ctl,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="outpost-rollout-") as tmp:
        yield Path(tmp)


def main() -> int:
    args = _args()
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}Z {platform.node()} {os.cpu_count()} cores")
    load_identities(args.nodes, PREFIX, args.cache)
    with (
        _workdir(args.keep) as base,
        bench_rig(base / "rig", scheme="http", serve_args=("--no-background",)) as rig,
    ):
        bundle = rig.cluster.bundle(base / "bundle")
        services = build_services(_settings(rig.cluster.data_dir))
        ctx = mp.get_context("spawn")
        ready, stop = ctx.Queue(), ctx.Event()
        _setup(rig, args.nodes, args.sites)
        sim = ctx.Process(target=_nodes_process, args=(bundle, rig.cluster.url,
                          rig.cluster.token, args.nodes, args.long_poll, args.cache, ready,
                          stop), name="simulator")  # fmt: skip
        sim.start()
        rig.simulator_pids = [sim.pid or 0]
        try:
            print(f"enrolled {ready.get(timeout=args.timeout)} nodes", flush=True)
            up = _wait("v1 RUNNING", lambda: _running(services, "1" * 64), args.nodes, 600)
            print(f"app v1 reported RUNNING by every node {up:.0f} s after enrolment", flush=True)
            idle0 = sample(rig.cluster.pids())
            time.sleep(args.idle)
            idle = sample(rig.cluster.pids()).cpu_percent(idle0)
            run = _rollout(rig, services, args)
        finally:
            services.notifier.close()
            stop.set()
            sim.join(60)
            if sim.is_alive():
                sim.kill()
    steps_ms = [s * 1000 for s in run["steps"]]
    cpu_ms = [c * 1000 for c in run["cpu"]]
    floor_ms = statistics.median(run["floors"]) * 1000
    per_node = run["engine_rows"] / args.nodes
    print(
        f"\nrollout of {args.nodes} nodes in {args.sites} sites (canary 10 % in 2 batches,"
        f" the rest in batches of 25 %, at most {args.budget} updating per site, soak"
        f" {args.soak:g} s): {run['took_s']:.0f} s, {len(steps_ms)} engine steps"
    )
    rows = [
        ("plan a step p50 (ms)", f"{statistics.median(steps_ms):.1f}", f"{floor_ms:.1f}",
         f"{statistics.median(steps_ms) / floor_ms:.1f}"),
        ("plan a step p95 (ms)", f"{_pct(steps_ms, 0.95):.1f}", f"{floor_ms:.1f}",
         f"{_pct(steps_ms, 0.95) / floor_ms:.1f}"),
        ("plan a step max (ms)", f"{max(steps_ms):.1f}", f"{floor_ms:.1f}",
         f"{max(steps_ms) / floor_ms:.1f}"),
        ("engine CPU per step p50 (ms)", f"{statistics.median(cpu_ms):.1f}", "-", "-"),
        ("engine CPU per step p95 (ms)", f"{_pct(cpu_ms, 0.95):.1f}", "-", "-"),
        ("engine CPU per step max (ms)", f"{max(cpu_ms):.1f}", "-", "-"),
        ("engine rows written per node", f"{per_node:.1f}", f"{MIN_WRITES_PER_NODE}",
         f"{per_node / MIN_WRITES_PER_NODE:.1f}"),
        ("all rows written per node (PostgreSQL)", f"{run['pg_rows'] / args.nodes:.1f}", "-",
         "-"),
        ("controller CPU, % of a core", f"{run['controller_cpu']:.0f}", f"{idle:.0f} (idle)",
         f"{run['controller_cpu'] / max(idle, 0.1):.1f}"),
    ]  # fmt: skip
    print(render_table(("measure", "rollout", "floor / peer", "ratio"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
