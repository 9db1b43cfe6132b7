"""Long-poll cost: N simulated nodes park a config long-poll at once; then one node at a
time gets an operator change, which must reach it while the others stay parked.

    .venv/bin/python -m benchmarks.longpoll --nodes 2000 [--changes 40] [--wait 110]
        [--via haproxy|direct] [--rest 15]

Prints the controller's RSS before and with every node parked (→ memory per parked node
and the projection to 100,000), its CPU at rest while they are parked, the change →
node delay p50/p99/max, and how many other nodes' polls returned early (woken for
nothing). ``--via haproxy`` (default) parks through HAProxy/TLS like production; one
HAProxy process proxies at most ~9,900 connections here (the 20,000 file-descriptor
limit cannot be raised), so more parked nodes need ``--via direct`` (nodes to the
replica, TLS at the controller). No metrics or periodic info run during the test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from benchmarks.rig import Rig, bench_rig
from benchmarks.simulator.fleet import Fleet, FleetSettings
from benchmarks.simulator.procstat import sample
from benchmarks.simulator.runner import (
    DEFAULT_CACHE,
    SimulationSpec,
    load_identities,
    onboarding_identity,
    open_fleet,
)
from benchmarks.simulator.stats import percentile, render_table
from tests.fixtures.haproxy import fd_maxconn


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=2000)
    p.add_argument("--changes", type=int, default=40)
    p.add_argument("--wait", type=float, default=110.0, help="long-poll wait_s (<= 120)")
    p.add_argument("--rest", type=float, default=15.0, help="seconds measured at rest")
    p.add_argument("--via", choices=("haproxy", "direct"), default="haproxy")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    return p.parse_args()


async def _until(cond, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


SETTLED_CPU_PERCENT = 25.0
"""The controller is at rest once a 3 s window uses less than this (% of one core)."""


async def _settled(pids: list[int], below: float, timeout_s: float) -> bool:
    """Whether the processes' CPU came under ``below`` % for a 3 s window in time."""
    deadline = time.monotonic() + timeout_s
    before = sample(pids)
    while time.monotonic() < deadline:
        await asyncio.sleep(3.0)
        now = sample(pids)
        if now.cpu_percent(before) < below:
            return True
        before = now
    return False


async def _measure(args: argparse.Namespace, rig: Rig, bundle: Path, identities) -> dict:  # type: ignore[no-untyped-def]
    replica = rig.cluster.replicas[0]
    url = f"https://127.0.0.1:{replica.port}" if args.via == "direct" else ""
    spec = SimulationSpec(
        bundle,
        identities,
        token=rig.cluster.token,
        url=url,
        fleet=FleetSettings(long_poll_s=args.wait, metrics_interval_s=0, info_interval_s=0),
        connections=args.nodes + 200,
    )
    pid = [replica.process.pid]  # type: ignore[union-attr]
    async with open_fleet(spec) as fleet:
        assert fleet.operator is not None
        await fleet.operator.allow_tpm_less()
        t0 = time.monotonic()
        await fleet.enrol(onboarding_identity(bundle), claim=True, bulk=True)
        enrol_s = time.monotonic() - t0
        fleet.new_phase()
        await asyncio.sleep(2.0)
        idle = sample(pid)
        fleet.start()
        parked = await _until(lambda: fleet.parked >= len(fleet.enrolled), 120)
        # "parked" is the simulator's count of polls sent: the controller may still be
        # handshaking and answering them; rest begins when its CPU has come down
        t_sent = time.monotonic()
        settled = await _settled(pid, SETTLED_CPU_PERCENT, 180.0)
        settle_s = time.monotonic() - t_sent
        rest0 = sample(pid)
        await asyncio.sleep(args.rest)
        rest1 = sample(pid)
        result = {
            "fleet": fleet,
            "enrol_s": enrol_s,
            "all_parked": parked,
            "settled": settled,
            "settle_s": settle_s,
            "parked": fleet.parked,
            "idle": idle,
            "rest0": rest0,
            "rest1": rest1,
        }
        result.update(await _changes(fleet, args.changes))
        return result


async def _changes(fleet: Fleet, count: int) -> dict:  # type: ignore[type-arg]
    """One change at a time to a random node; its delay; others woken meanwhile."""
    fleet.long_poll_returns.clear()
    fleet.count_wakeups = True
    delays, missed = [], 0
    picks = random.sample(fleet.enrolled, min(count, len(fleet.enrolled)))
    for node in picks:
        sent = time.monotonic()
        if not await fleet.change(node):
            missed += 1
            continue
        if await _until(lambda n=node: not n.expected, 10.0):
            delays.append(node.counter_at - sent)
        else:
            missed += 1
        await asyncio.sleep(0.05)
    fleet.count_wakeups = False
    chosen = {n.serial for n in picks}
    woken = sum(v for k, v in fleet.long_poll_returns.items() if k not in chosen)
    return {"delays": sorted(delays), "missed": missed, "others_woken": woken}


def main() -> int:
    args = _args()
    if args.via == "haproxy" and args.nodes > fd_maxconn() - 200:
        raise SystemExit(
            f"{args.nodes} parked polls exceed what one HAProxy process can hold"
            f" here (~{fd_maxconn()}): use --via direct"
        )
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}Z {platform.node()} {os.cpu_count()} cores")
    got = load_identities(args.nodes, "longpoll", args.cache)
    with (
        tempfile.TemporaryDirectory(prefix="outpost-longpoll-") as tmp,
        bench_rig(Path(tmp), 1) as rig,
    ):
        bundle = rig.cluster.bundle(Path(tmp) / "bundle")
        r = asyncio.run(_measure(args, rig, bundle, got.identities))
    n = r["parked"]
    per_node = (r["rest0"].rss_bytes - r["idle"].rss_bytes) / max(n, 1)
    d = r["delays"]
    print(
        f"\n== long-poll cost: {len(r['fleet'].enrolled)} nodes (enrolled in"
        f" {r['enrol_s']:.0f} s), wait {args.wait:.0f} s, via {args.via}"
    )
    print(
        f"all polls sent → controller at rest (< {SETTLED_CPU_PERCENT:.0f} % of a core):"
        f" {r['settle_s']:.0f} s" + ("" if r["settled"] else " (never settled: rest is busy)")
    )
    print(
        render_table(
            (
                "parked",
                "RSS idle MiB",
                "RSS parked MiB",
                "KiB per parked",
                "threads parked",
                "CPU % at rest",
                "100,000 parked → GiB",
            ),
            [
                (
                    n,
                    f"{r['idle'].rss_bytes / 2**20:.0f}",
                    f"{r['rest0'].rss_bytes / 2**20:.0f}",
                    f"{per_node / 1024:.1f}",
                    r["rest0"].threads,
                    f"{r['rest1'].cpu_percent(r['rest0']):.1f}",
                    f"{per_node * 100_000 / 2**30:.1f}",
                )
            ],
        )
    )
    print("\n-- a change to one node's config → that node holds it (others stay parked)")
    print(
        render_table(
            ("changes", "reached", "missed (>10 s)", "p50 s", "p99 s", "max s", "others woken"),
            [
                (
                    len(d) + r["missed"],
                    len(d),
                    r["missed"],
                    f"{percentile(d, 0.5):.3f}",
                    f"{percentile(d, 0.99):.3f}",
                    f"{d[-1] if d else float('nan'):.3f}",
                    r["others_woken"],
                )
            ],
        )
    )
    print(r["fleet"].stats.error_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
