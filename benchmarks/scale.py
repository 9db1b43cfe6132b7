"""Scale run: N registered simulated nodes polling config at 60 s with jitter through
HAProxy/TLS to controller replicas on PostgreSQL, for a duration; the simulator runs on
the same cores.

    .venv/bin/python -m benchmarks.scale --nodes 2000 [--duration 120] [--replicas 1]
        [--interval 60] [--jitter 0.25] [--metrics-interval 60] [--info-interval 600]
        [--long-poll 0] [--verify full|hash] [--change-every 5] [--backend-scheme https]

Nodes enrol through the real register endpoint (claimed first by the operator API, the
fleet policy set to allow TPM-less nodes, as simulated nodes attest in software), then
run EVE's timers. Prints: sustained polls/s (mean and the lowest 10 s window) against
the target N/interval, poll latency p50/p99, errors by kind, CPU and RSS of the
controllers, HAProxy, PostgreSQL and the simulator, how long an operator's change took
to reach its node, and the crypto floor (ECDSA verify + sign per second on these cores,
measured in the same run) with the ratio. Identities are cached (build/bench-cache).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.crypto_floor import floor_table, measure_floor
from benchmarks.rig import bench_rig, watch_usage
from benchmarks.simulator.cli_args import add_fleet_arguments, spec_from_args
from benchmarks.simulator.runner import (
    DEFAULT_CACHE,
    load_identities,
    onboarding_identity,
    open_fleet,
    run_steady,
)
from benchmarks.simulator.stats import render_table


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_fleet_arguments(p, duration_s=120.0)
    p.set_defaults(change_every=5.0)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--keep", type=Path, help="run in this dir and keep it (logs, config)")
    p.add_argument("--backend-scheme", choices=("https", "http"), default="https")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    return p.parse_args()


async def _simulate(args: argparse.Namespace, rig, bundle: Path, identities) -> dict:  # type: ignore[no-untyped-def]
    spec = spec_from_args(args, bundle, identities, rig.cluster.token)
    async with open_fleet(spec) as fleet:
        assert fleet.operator is not None
        await fleet.operator.allow_tpm_less()
        t0 = time.monotonic()
        enrolled = await fleet.enrol(onboarding_identity(bundle), claim=True)
        enrol_s = time.monotonic() - t0
        enrol = fleet.new_phase()
        print(f"enrolled {len(enrolled)}/{args.nodes} in {enrol_s:.0f} s", flush=True)
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_usage(rig, stop))
        run = await run_steady(fleet, args.duration, args.change_every, args.change_nodes)
        stop.set()
        usage = await watcher
        await fleet.stop()
        return {"enrol": enrol, "enrol_s": enrol_s, "run": run, "usage": usage, "fleet": fleet}


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
    got = load_identities(args.nodes, "scale", args.cache)
    ident = (
        f"{got.generated} generated at {got.generated_per_s:,.0f}/s (all cores)"
        if got.generated
        else "all cached"
    )
    print(f"identities: {args.nodes} ({ident}), loaded in {got.load_s:.1f} s", flush=True)
    with (
        _workdir(args.keep) as tmp,
        bench_rig(Path(tmp), args.replicas, args.backend_scheme) as rig,
    ):
        bundle = rig.cluster.bundle(Path(tmp) / "bundle")
        r = asyncio.run(_simulate(args, rig, bundle, got.identities))
    run, usage, fleet = r["run"], r["usage"], r["fleet"]
    kind = "config-long" if args.long_poll else "config"
    polls = run.summary(kind)
    low, _ = run.window_rates(kind, 10, skip_s=0)
    target = len(fleet.enrolled) / args.interval
    print(
        f"\n== scale run: {len(fleet.enrolled)} nodes, {args.duration:.0f} s,"
        f" {args.replicas} replica(s) behind HAProxy/TLS on PostgreSQL,"
        f" {'long-poll' if args.long_poll else f'poll {args.interval:.0f} s ±{args.jitter:.0%}'},"
        f" verify={args.verify}"
    )
    print(
        render_table(
            (
                "nodes",
                "polls/s",
                "lowest 10 s",
                "target",
                "p50 ms",
                "p99 ms",
                "max ms",
                "errors (all kinds)",
                "controller CPU %",
                "controller RSS MiB",
            ),
            [
                (
                    len(fleet.enrolled),
                    f"{polls.per_s:.1f}",
                    f"{low:.1f}",
                    f"{target:.1f}",
                    f"{polls.p50_ms:.1f}",
                    f"{polls.p99_ms:.1f}",
                    f"{polls.max_ms:.1f}",
                    run.error_count(),
                    f"{usage.cpu_percent['controllers']:.0f}",
                    f"{usage.peak_rss['controllers'] / 2**20:.0f}",
                )
            ],
        )
    )
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
