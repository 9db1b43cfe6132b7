"""Put a simulated fleet together from an onboarding bundle and run it: identities from
the cache, the pinned root, the controller's signing certs, enrolment, steady state.

    async with open_fleet(spec) as fleet: …      # used by the CLI and the benchmarks
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from attestation import pki
from benchmarks.simulator.fleet import Fleet, FleetSettings
from benchmarks.simulator.identities import IdentityCache, SimIdentity
from benchmarks.simulator.node import ConfigCheck, VerifyMode
from benchmarks.simulator.operator import Operator
from benchmarks.simulator.stats import Stats
from benchmarks.simulator.transport import Transport, TransportSettings
from node_agent.config_verifier import ConfigVerifier

__all__ = [
    "DEFAULT_CACHE",
    "IdentityLoad",
    "SimulationSpec",
    "load_identities",
    "onboarding_identity",
    "open_fleet",
    "raise_fd_limit",
    "run_steady",
]

DEFAULT_CACHE = Path(
    os.environ.get("OUTPOST_BENCH_CACHE", Path(__file__).resolve().parents[2] / "build/bench-cache")
)


@dataclass(frozen=True)
class IdentityLoad:
    identities: list[SimIdentity]
    generated: int
    generate_s: float
    load_s: float

    @property
    def generated_per_s(self) -> float:
        return self.generated / self.generate_s if self.generate_s > 0 else float("nan")


def load_identities(count: int, prefix: str = "sim", cache: Path = DEFAULT_CACHE) -> IdentityLoad:
    """``count`` identities, generating (all cores) only those not cached yet."""
    store = IdentityCache(cache, prefix)
    t0 = time.perf_counter()
    made = store.ensure(count)
    t1 = time.perf_counter()
    identities = store.load(count)
    return IdentityLoad(identities, made, t1 - t0, time.perf_counter() - t1)


def raise_fd_limit(want: int = 1 << 20) -> int:
    """Allow this process many sockets (a parked long-poll holds one); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (want, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, limit), max(hard, limit)))
            return max(soft, limit)
        except (ValueError, OSError):
            continue
    return soft


@dataclass
class SimulationSpec:
    bundle_dir: Path
    identities: list[SimIdentity]
    token: str = ""
    """An operator token (claims, policy, changes); empty: the nodes only."""
    url: str = ""
    """Overrides the bundle's controller URL."""
    verify: VerifyMode = "full"
    fleet: FleetSettings = field(default_factory=FleetSettings)
    connections: int = 1000
    keepalive: bool = True
    timeout_s: float = 30.0
    local_addresses: tuple[str, ...] = ()


@contextlib.asynccontextmanager
async def open_fleet(spec: SimulationSpec) -> AsyncIterator[Fleet]:
    """A fleet (not yet enrolled) talking to the bundle's controller; closed afterwards."""
    raise_fd_limit()
    controller = json.loads((spec.bundle_dir / "controller.json").read_text())
    url = spec.url or controller["url"]
    root_ca = spec.bundle_dir / "root-ca.pem"
    settings = TransportSettings(
        url, root_ca, spec.connections, spec.keepalive, spec.timeout_s, spec.local_addresses
    )
    async with Transport(settings, Stats()) as transport:
        check = ConfigCheck(spec.verify)
        if spec.verify == "full":
            _, certs = await transport.request("certs", "GET", "/api/v1/device/certs")
            check.verifier = ConfigVerifier(
                pki.load_cert(root_ca.read_bytes()),
                [pki.load_cert(p) for p in certs.get("signing", [])],
            )
        operator = Operator(transport, spec.token) if spec.token else None
        fleet = Fleet(spec.identities, transport, check, spec.fleet, operator)
        try:
            yield fleet
        finally:
            await fleet.stop()


def onboarding_identity(bundle_dir: Path) -> pki.Identity:
    return pki.load_identity(bundle_dir / "onboarding.pem", bundle_dir / "onboarding.key")


async def run_steady(
    fleet: Fleet, duration_s: float, change_every_s: float = 0.0, change_nodes: int = 1
) -> Stats:
    """Run the enrolled fleet for ``duration_s`` (changing nodes now and then); returns
    the steady-state stats (a new phase starts here)."""
    fleet.new_phase()
    fleet.start()
    until = time.monotonic() + duration_s
    if change_every_s > 0 and fleet.operator is not None:
        # polling nodes see a change within one (jittered) interval: stop changing one
        # interval before the end so every change can be seen and the delays are unbiased
        s = fleet.settings
        margin = 0.0 if s.long_poll_s > 0 else s.config_interval_s * (1 + s.jitter) + 5
        await fleet.changes(change_every_s, change_nodes, until - margin)
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    return fleet.new_phase()  # later answers (e.g. while stopping) count elsewhere
