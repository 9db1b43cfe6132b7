"""Fault harness: N simulated nodes long-polling through HAProxy to 3 controller replicas
on one PostgreSQL, an operator sending reboot commands meanwhile; replica 0 is SIGKILLed,
later replica 1's PostgreSQL connections are cut (``pg_terminate_backend``). Measures how
long until every node got a config answer again, what the nodes saw, and then checks
that no info was lost and no command duplicated.

    .venv/bin/python -m benchmarks.failover [--nodes 1000]

``tests/integration/test_replica_failover.py`` runs the same scenario and asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.simulator.fleet import Fleet, FleetSettings
from benchmarks.simulator.runner import (
    SimulationSpec,
    load_identities,
    onboarding_identity,
    open_fleet,
)
from benchmarks.simulator.stats import Stats, render_table
from benchmarks.simulator.transport import RequestFailed
from tests.fixtures.cluster import Cluster, running_cluster
from tests.fixtures.postgres import fresh_database, private_postgres

__all__ = ["FailoverResult", "check", "run_failover"]

SETTINGS = FleetSettings(
    config_interval_s=10.0,  # the agent waits this long after a failed config request
    long_poll_s=25.0,  # each fault phase lasts about one long-poll: CI time
    metrics_interval_s=0.0,
    info_interval_s=30.0,
    retry_s=2.0,
    enrol_concurrency=24,
)


async def _until(
    what: str, cond: Callable[[], bool], timeout_s: float, why: Callable[[], str] = str
) -> float:
    """Seconds until ``cond`` held; AssertionError naming ``what`` (and ``why()``) after
    ``timeout_s``."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}\n{why()}")
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


def _diagnosis(fleet: Fleet, cluster: Cluster, since: float) -> Callable[[], str]:
    def text() -> str:
        behind = [n for n in fleet.enrolled if n.last_config_ok <= since]
        servers = {k: v["status"] for k, v in cluster.lb.servers().items()}  # type: ignore[union-attr]
        return (
            f"{len(behind)} nodes without an answer (e.g. {[n.serial for n in behind[:5]]});"
            f" {fleet.parked} long-polls in flight; HAProxy: {servers}\n"
            f"{fleet.stats.error_table()}"
        )

    return text


def _unreached(fleet: Fleet) -> str:
    """The nodes still short of an acknowledged command, as the node saw them."""
    now = time.monotonic()
    short = [
        f"{n.serial}: holds {n.reboot_counter}, expects {[c for c, _ in n.expected]},"
        f" last config answer {now - n.last_config_ok:.0f} s ago"
        for n in fleet.enrolled
        if any(c > n.reboot_counter for c, _ in n.expected)
    ]
    return f"{len(short)} nodes: {short[:5]}; {fleet.parked} long-polls in flight"


@dataclass
class Commands:
    """An operator sending reboot commands to random nodes through HAProxy."""

    fleet: Fleet
    acked: Counter[str] = field(default_factory=Counter)
    """serial → commands the controller answered."""
    ambiguous: Counter[str] = field(default_factory=Counter)
    """serial → commands whose answer was lost (may or may not have been applied)."""
    running: bool = True

    async def run(self, every_s: float) -> None:
        while self.running:
            node = random.choice(self.fleet.enrolled)
            sent = time.monotonic()
            try:
                counter = await self.fleet.operator.reboot(node.serial)  # type: ignore[union-attr]
            except RequestFailed as exc:
                if exc.status is None or exc.status >= 500:
                    self.ambiguous[node.serial] += 1
            else:
                self.acked[node.serial] += 1
                node.expected.append((counter, sent))
                # the node's long-poll may have brought the counter before this answer came
                for delay in node.reached():
                    self.fleet.stats.change_reached(delay)
            await asyncio.sleep(every_s)


@dataclass
class FailoverResult:
    fleet: Fleet
    commands: Commands
    stats: Stats
    """What the nodes saw from the start of the faults to the end."""
    after_kill_s: float
    """SIGKILL → every node had a config answer again."""
    after_cut_s: float
    """Database cut → every node had a config answer again."""
    commands_settled_s: float
    cut_connections: int


async def run_failover(cluster: Cluster, bundle: Path, nodes: int) -> FailoverResult:
    identities = load_identities(nodes, "failover").identities
    spec = SimulationSpec(
        bundle, identities, token=cluster.token, fleet=SETTINGS, connections=nodes + 200
    )
    async with open_fleet(spec) as fleet:
        assert fleet.operator is not None and cluster.lb is not None
        await fleet.operator.allow_tpm_less()
        await fleet.enrol(onboarding_identity(bundle), claim=True, bulk=True)
        assert len(fleet.enrolled) == nodes, fleet.stats.error_table()
        fleet.new_phase()
        fleet.start()
        await _until("every node parks a long-poll", lambda: fleet.parked >= nodes, 300)
        commands = Commands(fleet)
        sender = asyncio.create_task(commands.run(0.5))
        await asyncio.sleep(5)  # commands and info flow through all three replicas

        killed_at = time.monotonic()
        cluster.kill(0)
        await asyncio.to_thread(cluster.lb.wait_server_status, "controller1", "DOWN")
        after_kill = await _until(
            "every node gets a config answer after the SIGKILL",
            lambda: all(n.last_config_ok > killed_at for n in fleet.enrolled),
            SETTINGS.long_poll_s + 90,
            _diagnosis(fleet, cluster, killed_at),
        )
        cut_at = time.monotonic()
        cut = cluster.cut_database(1)
        after_cut = await _until(
            "every node gets a config answer after the database cut",
            lambda: all(n.last_config_ok > cut_at for n in fleet.enrolled),
            SETTINGS.long_poll_s + 90,
            _diagnosis(fleet, cluster, cut_at),
        )
        commands.running = False
        await sender
        settled = await _until(
            "every acknowledged command reaches its node",
            lambda: fleet.unreached() == 0,
            SETTINGS.long_poll_s + 30,
            lambda: _unreached(fleet),
        )
        await fleet.stop()
        assert await fleet.drain_info(60) == 0, "info still undelivered after 60 s"
        return FailoverResult(
            fleet, commands, fleet.new_phase(), after_kill, after_cut, settled, cut
        )


def check(cluster: Cluster, r: FailoverResult) -> tuple[list[tuple], list[tuple]]:  # type: ignore[type-arg]
    """(lost info, wrong commands), each empty when all is well.

    Info: the controller holds each node's newest message (``sim-<seq>``). Commands: the
    controller's counter lies between the answered commands and all commands sent for
    that node (beyond: one was applied twice), and the node holds that counter, having
    acted at most once per increase.
    """
    held = {n["serial"]: n for n in cluster.api("GET", "/nodes").json()["nodes"]}
    lost = [
        (n.serial, n.info_seq, held[n.serial]["info"].get("agent_version"))
        for n in r.fleet.enrolled
        if held[n.serial]["info"].get("agent_version") != f"sim-{n.info_seq}"
        or n.info_delivered_seq != n.info_seq
    ]
    wrong = []
    c = r.commands
    for serial in set(c.acked) | set(c.ambiguous):
        node = r.fleet.by_serial[serial]
        counter = cluster.api("GET", f"/nodes/{serial}").json()["reboot_counter"]
        sent = c.acked[serial] + c.ambiguous[serial]
        if not c.acked[serial] <= counter <= sent:
            wrong.append((serial, "controller counter", counter, c.acked[serial], sent))
        if node.reboot_counter != counter or not min(1, counter) <= node.reboots_acted <= counter:
            wrong.append((serial, "node", node.reboot_counter, node.reboots_acted, counter))
    return lost, wrong


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    args = p.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="outpost-failover-") as tmp,
        private_postgres() as server,
        fresh_database(server) as db_url,
        running_cluster(Path(tmp), db_url, replicas=3) as cluster,
    ):
        r = asyncio.run(run_failover(cluster, cluster.bundle(Path(tmp) / "bundle"), args.nodes))
        lost, wrong = check(cluster, r)
        logs = [rep.log.read_text() for rep in cluster.replicas]
    tracebacks = [log.count("Traceback") for log in logs]
    print(
        render_table(
            (
                "nodes",
                "SIGKILL → all answered s",
                "DB cut → all answered s",
                "connections cut",
                "commands answered",
                "ambiguous",
                "lost info",
                "wrong commands",
                "tracebacks per replica",
            ),
            [
                (
                    len(r.fleet.enrolled),
                    f"{r.after_kill_s:.1f}",
                    f"{r.after_cut_s:.1f}",
                    r.cut_connections,
                    sum(r.commands.acked.values()),
                    sum(r.commands.ambiguous.values()),
                    len(lost),
                    len(wrong),
                    " ".join(map(str, tracebacks)),
                )
            ],
        )
    )
    print(r.stats.table())
    print(r.stats.error_table())
    return 0 if not lost and not wrong else 1


if __name__ == "__main__":
    raise SystemExit(main())
