"""Nodes onboard and get their config through HAProxy (TLS at the load balancer) from two
controller replicas on one PostgreSQL; a dead replica is taken out by the health checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.simulator.fleet import Fleet, FleetSettings
from benchmarks.simulator.identities import make_identity
from benchmarks.simulator.runner import SimulationSpec, onboarding_identity, open_fleet
from tests.fixtures.cluster import Cluster, running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, postgres_url, replicas=2) as c:
        yield c


async def _until(condition, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


def _spec(cluster: Cluster, bundle: Path, nodes: int, **fleet: float) -> SimulationSpec:
    identities = [make_identity(f"lb-{i:03d}") for i in range(nodes)]
    return SimulationSpec(bundle, identities, token=cluster.token, fleet=FleetSettings(**fleet))


def test_nodes_onboard_and_get_config_through_haproxy_from_both_replicas(
    cluster: Cluster, tmp_path: Path
) -> None:
    bundle = cluster.bundle(tmp_path / "bundle")
    assert cluster.url in (bundle / "controller.json").read_text()  # nodes dial HAProxy

    async def scenario() -> Fleet:
        async with open_fleet(_spec(cluster, bundle, 12, metrics_interval_s=0)) as fleet:
            assert fleet.operator is not None
            await fleet.operator.allow_tpm_less()
            enrolled = await fleet.enrol(onboarding_identity(bundle), claim=True)
            assert len(enrolled) == 12, fleet.stats.error_table()
            return fleet

    fleet = asyncio.run(scenario())
    assert all(n.node_uuid and n.generation >= 0 and n.config_hash for n in fleet.enrolled)
    assert fleet.stats.error_count() == 0, fleet.stats.error_table()
    answered = {name: int(s["hrsp_2xx"]) for name, s in cluster.lb.servers().items()}  # type: ignore[union-attr]
    assert all(n > 0 for n in answered.values()), answered  # both replicas served


def test_an_operator_change_reaches_a_long_polling_node_through_haproxy(
    cluster: Cluster, tmp_path: Path
) -> None:
    bundle = cluster.bundle(tmp_path / "bundle")

    async def scenario() -> tuple[int, int]:
        spec = _spec(cluster, bundle, 4, long_poll_s=30, metrics_interval_s=0, info_interval_s=0)
        async with open_fleet(spec) as fleet:
            assert fleet.operator is not None
            await fleet.operator.allow_tpm_less()
            await fleet.enrol(onboarding_identity(bundle), claim=True)
            fleet.start()
            await _until(lambda: fleet.parked == 4)
            target = fleet.enrolled[2]
            assert await fleet.change(target)
            await _until(lambda: not target.expected)
            return target.reboot_counter, len(fleet.stats.change_delays_s)

    counter, reached = asyncio.run(scenario())
    assert counter == 1 and reached == 1


def test_a_killed_replica_is_taken_out_and_nodes_keep_getting_config(
    cluster: Cluster, tmp_path: Path
) -> None:
    bundle = cluster.bundle(tmp_path / "bundle")
    assert cluster.lb is not None

    async def scenario() -> Fleet:
        async with open_fleet(_spec(cluster, bundle, 6, metrics_interval_s=0)) as fleet:
            assert fleet.operator is not None
            await fleet.operator.allow_tpm_less()
            await fleet.enrol(onboarding_identity(bundle), claim=True)
            cluster.kill(0)
            await asyncio.to_thread(cluster.lb.wait_server_status, "controller1", "DOWN")
            fleet.new_phase()
            for node in fleet.enrolled:
                assert await node.poll_config(fleet.t, fleet.check) is False  # unchanged
            return fleet

    fleet = asyncio.run(scenario())
    assert fleet.stats.count("config") == 6 and fleet.stats.error_count() == 0
