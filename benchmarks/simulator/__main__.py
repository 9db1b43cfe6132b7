"""``python -m benchmarks.simulator``: simulated nodes against a running controller.

    identities --nodes N                 make (or find cached) N identities; prints the rate
    manifest --nodes N --out F [--format csv|json]
                                         the bulk-enrolment manifest of those identities
    run --bundle DIR --nodes N --duration S [--token-file F --claim --allow-tpm-less]
        [--long-poll S] [--change-every S --change-nodes K] …
                                         enrol N nodes through the register endpoint, run
                                         them with EVE's timers, print what they saw

The nodes talk to the bundle's controller URL (``--url`` overrides it: a load balancer).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import sys
import time
from pathlib import Path

from benchmarks.simulator.cli_args import add_fleet_arguments, spec_from_args
from benchmarks.simulator.identities import manifest_bytes
from benchmarks.simulator.procstat import sample
from benchmarks.simulator.runner import (
    DEFAULT_CACHE,
    load_identities,
    onboarding_identity,
    open_fleet,
    run_steady,
)
from benchmarks.simulator.stats import render_table


def _identities(args: argparse.Namespace) -> int:
    got = load_identities(args.nodes, args.prefix, args.cache)
    print(
        render_table(
            ("identities", "generated", "generate s", "per s (all cores)", "load s", "cores"),
            [
                (
                    len(got.identities),
                    got.generated,
                    f"{got.generate_s:.2f}",
                    f"{got.generated_per_s:,.0f}" if got.generated else "cached",
                    f"{got.load_s:.2f}",
                    os.cpu_count(),
                )
            ],
        )
    )
    return 0


def _manifest(args: argparse.Namespace) -> int:
    got = load_identities(args.nodes, args.prefix, args.cache)
    args.out.write_bytes(manifest_bytes(got.identities, args.format))
    print(f"{len(got.identities)} devices written to {args.out} ({args.format})")
    return 0


async def _run(args: argparse.Namespace) -> int:
    got = load_identities(args.nodes, args.prefix, args.cache)
    token = args.token_file.read_text().strip() if args.token_file else ""
    spec = spec_from_args(args, args.bundle, got.identities, token, args.url or "")
    async with open_fleet(spec) as fleet:
        if args.allow_tpm_less:
            assert fleet.operator, "--allow-tpm-less needs --token-file"
            await fleet.operator.allow_tpm_less()
        t0 = time.monotonic()
        enrolled = await fleet.enrol(onboarding_identity(args.bundle), claim=args.claim)
        enrol = fleet.new_phase()
        print(f"enrolled {len(enrolled)}/{args.nodes} nodes in {time.monotonic() - t0:.1f} s")
        print(enrol.table())
        me0 = sample([os.getpid()], children=False)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        run = await run_steady(fleet, args.duration, args.change_every, args.change_nodes)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        me1 = sample([os.getpid()], children=False)
        await fleet.stop()
    print(
        f"\nsteady state, {args.duration:.0f} s, {len(enrolled)} nodes"
        f" ({f'long-poll {args.long_poll:.0f} s' if args.long_poll else 'polling'},"
        f" verify={args.verify}):"
    )
    print(run.table())
    print(run.error_table())
    if run.changes_marked:
        print("operator change → node holds it:")
        print(run.change_table())
    done = sum(run.count(k) for k in run.kinds()) + run.error_count()
    cpu_ms = (me1.cpu_s - me0.cpu_s) * 1000 / max(done, 1)
    print(
        f"simulator: {me1.cpu_percent(me0):.0f} % of a core ({cpu_ms:.2f} ms CPU per request),"
        f" RSS {me1.rss_bytes / 2**20:.0f} MiB"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="identity cache dir")
    p.add_argument("--prefix", default="sim", help="serials are <prefix>-NNNNNN")
    p.add_argument("--log-level", default="ERROR")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("identities", help="make or load cached identities; print the rate")
    s.add_argument("--nodes", type=int, required=True)
    s.set_defaults(fn=_identities)

    s = sub.add_parser("manifest", help="write a bulk-enrolment manifest")
    s.add_argument("--nodes", type=int, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--format", choices=("csv", "json"), default="csv")
    s.set_defaults(fn=_manifest)

    s = sub.add_parser("run", help="enrol and run simulated nodes")
    s.add_argument("--bundle", type=Path, required=True, help="an onboarding bundle dir")
    s.add_argument("--url", help="controller or load-balancer URL (default: the bundle's)")
    s.add_argument("--token-file", type=Path, help="operator token (claims, policy, changes)")
    s.add_argument("--claim", action="store_true", help="claim each serial before registering")
    s.add_argument(
        "--allow-tpm-less",
        action="store_true",
        help="set the fleet policy tpm_less=allow first (simulated nodes have no TPM)",
    )
    add_fleet_arguments(s)
    s.add_argument("--profile", type=Path, help="cProfile the steady state into this file")
    s.set_defaults(fn=lambda a: asyncio.run(_run(a)))

    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
