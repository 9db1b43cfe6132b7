"""Command-line options shared by the simulator's CLI and the benchmarks that run it."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.simulator.fleet import FleetSettings
from benchmarks.simulator.identities import SimIdentity
from benchmarks.simulator.runner import SimulationSpec

__all__ = ["add_fleet_arguments", "spec_from_args"]


def add_fleet_arguments(p: argparse.ArgumentParser, duration_s: float = 60.0) -> None:
    """Timers, verification, connections and operator changes of a simulated fleet."""
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--duration", type=float, default=duration_s, help="steady-state seconds")
    p.add_argument("--interval", type=float, default=60.0, help="config poll interval (s)")
    p.add_argument("--jitter", type=float, default=0.25, help="timers fire at x U(1-j, 1+j)")
    p.add_argument("--long-poll", type=float, default=0.0, help="long-poll wait (0: poll)")
    p.add_argument("--metrics-interval", type=float, default=60.0, help="0: no metrics")
    p.add_argument("--info-interval", type=float, default=600.0, help="periodic full info")
    p.add_argument(
        "--verify",
        choices=("full", "hash"),
        default="full",
        help="full: the agent's ConfigVerifier; hash: content hash only",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=0,
        help="connection pool size (default 1000; nodes+100 with long-poll)",
    )
    p.add_argument("--no-keepalive", action="store_true", help="a new connection per request")
    p.add_argument("--enrol-concurrency", type=int, default=24)
    p.add_argument(
        "--change-every",
        type=float,
        default=0.0,
        help="every S seconds an operator change (reboot command) to K nodes",
    )
    p.add_argument("--change-nodes", type=int, default=1, help="K")


def spec_from_args(
    args: argparse.Namespace,
    bundle: Path,
    identities: list[SimIdentity],
    token: str = "",
    url: str = "",
) -> SimulationSpec:
    return SimulationSpec(
        bundle_dir=bundle,
        identities=identities,
        token=token,
        url=url,
        verify=args.verify,
        fleet=FleetSettings(
            config_interval_s=args.interval,
            jitter=args.jitter,
            long_poll_s=args.long_poll,
            metrics_interval_s=args.metrics_interval,
            info_interval_s=args.info_interval,
            enrol_concurrency=args.enrol_concurrency,
        ),
        connections=args.connections or (args.nodes + 100 if args.long_poll else 1000),
        keepalive=not args.no_keepalive,
    )
