"""Fault test: 3 controller replicas behind HAProxy on one PostgreSQL with 1,000 simulated
nodes long-polling; one replica is SIGKILLed, later another's PostgreSQL connections are
cut (``pg_terminate_backend``). Nodes fail over to the survivors with no lost ``info``
and no duplicated command (the scenario: ``benchmarks/failover.py``, which also prints
its timings). Background work once across replicas is the marked test at the end.

``OUTPOST_FAILOVER_NODES`` changes the fleet size (1,000 by default, as the acceptance).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from benchmarks.failover import check, run_failover
from tests.fixtures.cluster import Cluster, running_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODES = int(os.environ.get("OUTPOST_FAILOVER_NODES", "1000"))


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, postgres_url, replicas=3) as c:
        yield c


def test_nodes_fail_over_without_lost_info_or_duplicated_commands(
    cluster: Cluster, tmp_path: Path
) -> None:
    bundle = cluster.bundle(tmp_path / "bundle")
    result = asyncio.run(run_failover(cluster, bundle, NODES))
    lost, wrong = check(cluster, result)
    errors = result.stats.error_table()
    assert lost == [], f"info lost (node, newest seq, controller holds): {lost[:10]}\n{errors}"
    assert sum(result.commands.acked.values()) >= 10, errors
    assert wrong == [], f"commands lost or duplicated: {wrong[:10]}\n{errors}"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit(repo: Path, serial: str) -> str:
    """A revision naming one more node (claimed pinned: the controller refuses bare serials)."""
    site = repo / "sites" / "lab"
    site.mkdir(parents=True, exist_ok=True)
    pin = hashlib.sha256(serial.encode()).hexdigest()
    (site / f"{serial}.yaml").write_text(
        f"kind: Node\nspec:\n  serial: {serial}\n  device_cert_sha256: {pin}\n"
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"site with {serial}")
    return _git(repo, "rev-parse", "HEAD")


def _leaders(cluster: Cluster) -> list[int]:
    """Replicas whose /healthz says they hold the background-work leadership."""
    out = []
    for r in cluster.replicas:
        if r.process is None or r.process.poll() is not None:
            continue
        health = requests.get(
            f"{cluster.scheme}://127.0.0.1:{r.port}/healthz", verify=str(cluster.root_ca), timeout=5
        ).json()
        if health.get("leader") is True:
            out.append(r.index)
    return out


def _applied(cluster: Cluster, sha: str) -> int:
    answer = cluster.api("GET", "/audit", params={"action": "git.sync", "target": sha})
    if answer.status_code in (502, 503):  # HAProxy sent it to the replica just killed
        return 0
    return len(answer.json()["events"])


def test_background_jobs_run_exactly_once_across_replicas_and_fail_over(
    cluster: Cluster, tmp_path: Path
) -> None:
    """What the leadership work must make true (checked through the public API):

    1. exactly one live replica reports ``"leader": true`` in ``GET /healthz``;
    2. a periodic git sync applies each new revision exactly once (one ``git.sync``
       audit entry for its sha), not once per replica;
    3. after the leader is SIGKILLed another replica takes over within 10 s, and the
       next revision is applied, once, within 15 s;
    4. cutting the leader's database connections moves the leadership too (its
       advisory lock died with its session) and nothing is applied twice meanwhile.
    """
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "ops@example.test")
    _git(repo, "config", "user.name", "ops")
    first = _commit(repo, "bg-1")
    cluster.api("PUT", "/git/source", json={"url": str(repo), "interval_s": 1}).raise_for_status()

    def wait(what: str, cond: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
            time.sleep(0.2)

    wait("one leader", lambda: len(_leaders(cluster)) == 1, 15)
    wait("the first revision applied", lambda: _applied(cluster, first) >= 1, 15)
    time.sleep(3)  # three more sync periods: a second replica would apply it again
    assert _applied(cluster, first) == 1

    leader = _leaders(cluster)[0]
    cluster.kill(leader)
    wait("a new leader", lambda: len(_leaders(cluster)) == 1, 10)
    second = _commit(repo, "bg-2")
    wait("the next revision applied", lambda: _applied(cluster, second) >= 1, 15)
    time.sleep(3)
    assert _applied(cluster, second) == 1

    leader = _leaders(cluster)[0]
    assert cluster.cut_database(leader) >= 1
    wait("leadership moves or is re-taken", lambda: len(_leaders(cluster)) == 1, 15)
    third = _commit(repo, "bg-3")
    wait("the revision after the cut applied", lambda: _applied(cluster, third) >= 1, 15)
    time.sleep(3)
    assert _applied(cluster, third) == 1
