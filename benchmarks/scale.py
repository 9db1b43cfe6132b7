"""Scale run: N registered simulated nodes polling config at 60 s with jitter through
HAProxy/TLS to controller replicas on PostgreSQL, for a duration; the simulator runs on
the same cores.

    .venv/bin/python -m benchmarks.scale --nodes 2000 [--duration 120] [--replicas 1]
        [--processes 1] [--interval 60] [--jitter 0.25] [--metrics-interval 60]
        [--info-interval 600] [--long-poll 0] [--verify full|hash] [--change-every 5]
        [--backend-scheme https] [--keep DIR]

Nodes enrol through the real register endpoint (claimed first by the operator API, the
fleet policy set to allow TPM-less nodes, as simulated nodes attest in software), then
run EVE's timers. Prints: sustained polls/s (mean and the lowest 10 s window) against
the target N/interval, poll latency p50/p99, errors by kind, CPU and RSS of the
controllers, HAProxy, PostgreSQL and the simulator, how long an operator's change took
to reach its node, and the crypto floor (ECDSA verify + sign per second on these cores,
measured in the same run) with the ratio. Identities are cached (build/bench-cache).

One simulator process tops out near 1,000 requests/s (``benchmarks.simulator_cost``) and
~19,000 sockets (the descriptor limit here): ``--processes P`` splits the nodes over P
processes that start their steady state together; the tables merge them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing as mp
import os
import platform
import queue
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.crypto_floor import floor_table, measure_floor
from benchmarks.rig import Rig, bench_rig, watch_usage
from benchmarks.simulator.cli_args import add_fleet_arguments, spec_from_args
from benchmarks.simulator.identities import IdentityCache
from benchmarks.simulator.runner import (
    DEFAULT_CACHE,
    load_identities,
    onboarding_identity,
    open_fleet,
    run_steady,
)
from benchmarks.simulator.stats import Stats, render_table

PREFIX = "scale"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_fleet_arguments(p, duration_s=120.0)
    p.set_defaults(change_every=5.0)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--processes", type=int, default=1, help="simulator processes")
    p.add_argument("--keep", type=Path, help="run in this dir and keep it (logs, config)")
    p.add_argument("--backend-scheme", choices=("https", "http"), default="https")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument(
        "--enrol",
        choices=("bulk", "register"),
        default="bulk",
        help="bulk: one manifest import per simulator process; register: claim + register each",
    )
    return p.parse_args()


def _shard(
    args: argparse.Namespace,
    bundle: Path,
    token: str,
    shard: int,
    start: int,
    count: int,
    results: Any,
    go: Any,
) -> None:
    """One simulator process: enrol its nodes, report, wait for ``go``, run, report."""

    async def simulate() -> None:
        identities = IdentityCache(args.cache, PREFIX).load(count, start)
        spec = spec_from_args(args, bundle, identities, token)
        async with open_fleet(spec) as fleet:
            assert fleet.operator is not None
            if shard == 0:  # the operator sets the policy once, before any node attests
                await fleet.operator.allow_tpm_less()
                go["policy"].set()
            else:
                await asyncio.to_thread(go["policy"].wait)
            enrolled = await fleet.enrol(
                onboarding_identity(bundle), claim=True, bulk=args.enrol == "bulk"
            )
            results.put(("enrolled", shard, len(enrolled), fleet.new_phase().plain()))
            await asyncio.to_thread(go["steady"].wait)
            every = args.change_every if shard == 0 else 0.0  # one operator
            run = await run_steady(fleet, args.duration, every, args.change_nodes)
            await fleet.stop()
            results.put(("run", shard, len(enrolled), run.plain()))

    asyncio.run(simulate())


def _collect(results: Any, procs: list[Any], kind: str) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    while len(out) < len(procs):
        try:
            msg = results.get(timeout=5)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"simulator process failed: exit {dead[0].exitcode}") from None
            continue
        assert msg[0] == kind, msg
        out.append(msg)
    return out


def _simulate(args: argparse.Namespace, rig: Rig, bundle: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    go = {"policy": ctx.Event(), "steady": ctx.Event()}
    per = -(-args.nodes // args.processes)
    shards = [(i, i * per, min(per, args.nodes - i * per)) for i in range(args.processes)]
    procs = [
        ctx.Process(
            target=_shard,
            args=(args, bundle, rig.cluster.token, i, start, count, results, go),
            name=f"simulator-{i}",
        )
        for i, start, count in shards
        if count > 0
    ]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    rig.simulator_pids = [p.pid for p in procs]  # type: ignore[misc]
    enrolled = _collect(results, procs, "enrolled")
    enrol_s = time.monotonic() - t0
    n = sum(m[2] for m in enrolled)
    print(f"enrolled {n}/{args.nodes} in {enrol_s:.0f} s ({len(procs)} process(es))", flush=True)

    async def steady() -> Any:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_usage(rig, stop))
        go["steady"].set()
        await asyncio.sleep(args.duration)
        stop.set()
        return await watcher

    usage = asyncio.run(steady())
    runs = _collect(results, procs, "run")
    for p in procs:
        p.join(60)
    return {
        "enrolled": n,
        "enrol": Stats.merged([m[3] for m in enrolled]),
        "enrol_s": enrol_s,
        "run": Stats.merged([m[3] for m in runs]),
        "usage": usage,
    }


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[str]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield str(keep)
        return
    with tempfile.TemporaryDirectory(prefix="outpost-scale-") as tmp:
        yield tmp


def main() -> int:
    args = _args()
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}Z {platform.node()} {os.cpu_count()} cores")
    floor = measure_floor(2.0)
    got = load_identities(args.nodes, PREFIX, args.cache)
    ident = (
        f"{got.generated} generated at {got.generated_per_s:,.0f}/s (all cores)"
        if got.generated
        else "all cached"
    )
    print(f"identities: {args.nodes} ({ident}), loaded in {got.load_s:.1f} s", flush=True)
    del got
    with (
        _workdir(args.keep) as tmp,
        bench_rig(Path(tmp), args.replicas, args.backend_scheme) as rig,
    ):
        r = _simulate(args, rig, rig.cluster.bundle(Path(tmp) / "bundle"))
    run, usage, nodes = r["run"], r["usage"], r["enrolled"]
    kind = "config-long" if args.long_poll else "config"
    polls = run.summary(kind)
    low, _ = run.window_rates(kind, 10, skip_s=0)
    timers = "long-poll" if args.long_poll else f"poll {args.interval:.0f} s ±{args.jitter:.0%}"
    print(
        f"\n== scale run: {nodes} nodes, {args.duration:.0f} s, {args.replicas} replica(s)"
        f" behind HAProxy/TLS on PostgreSQL, {timers}, verify={args.verify},"
        f" {args.processes} simulator process(es)"
    )
    print(
        render_table(
            ("nodes", "polls/s", "lowest 10 s", "target", "p50 ms", "p99 ms", "max ms",
             "errors (all kinds)", "controller CPU %", "controller RSS MiB"),
            [(
                nodes, f"{polls.per_s:.1f}", f"{low:.1f}", f"{nodes / args.interval:.1f}",
                f"{polls.p50_ms:.1f}", f"{polls.p99_ms:.1f}", f"{polls.max_ms:.1f}",
                run.error_count(), f"{usage.cpu_percent['controllers']:.0f}",
                f"{usage.peak_rss['controllers'] / 2**20:.0f}",
            )],
        )
    )  # fmt: skip
    print("\n-- crypto floor (same run) and the ratio")
    print(floor_table(floor, polls.per_s))
    print("\n-- requests in the steady state")
    print(run.table())
    print(run.error_table())
    print("\n-- CPU and memory over the steady state")
    print(usage.table())
    if run.changes_marked:
        print("\n-- operator change (reboot command) → its node holds the new config")
        print(run.change_table())
    print(f"\n-- enrolment ({r['enrol_s']:.0f} s: claim, register, attest, first config, info)")
    print(r["enrol"].table())
    print(r["enrol"].error_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
