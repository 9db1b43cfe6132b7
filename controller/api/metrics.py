"""``GET /metrics``: the controller's metrics in Prometheus' text format (a viewer token:
Prometheus sends it with ``authorization: {credentials_file: …}``).

Besides the counters of :mod:`controller.web.telemetry`, each scrape reads from the
database: nodes by state (claimed, online, offline, revoked), attestation states and
rollouts by state — the same for every replica and process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from controller.api.auth import require_role
from controller.domain.status import online_cutoff
from controller.services import Services
from controller.store.models import Node, NodeTrust, Rollout
from controller.web.context import current_services

__all__ = ["metrics_api"]

metrics_api = Blueprint("metrics_api", __name__)


class FleetCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        nodes = GaugeMetricFamily("outpost_nodes", "Nodes by state.", labels=["state"])
        trust = GaugeMetricFamily(
            "outpost_nodes_attestation", "Registered nodes by attestation state.", labels=["state"]
        )
        rollouts = GaugeMetricFamily("outpost_rollouts", "Rollouts by state.", labels=["state"])
        cutoff = online_cutoff(self.services.settings.node_config_interval_s)
        with self.services.db.transaction() as s:
            revoked = s.scalar(
                select(func.count()).select_from(NodeTrust).where(NodeTrust.revoked_at.is_not(None))
            )
            claimed = s.scalar(select(func.count()).where(Node.state == "claimed"))
            online = s.scalar(
                select(func.count()).where(Node.state == "registered", Node.last_seen >= cutoff)
            )
            registered = s.scalar(select(func.count()).where(Node.state == "registered"))
            states: dict[str, int] = {
                state: count
                for state, count in s.execute(
                    select(NodeTrust.state, func.count()).group_by(NodeTrust.state)
                )
            }
            by_rollout: dict[str, int] = {
                state: count
                for state, count in s.execute(
                    select(Rollout.state, func.count()).group_by(Rollout.state)
                )
            }
        nodes.add_metric(["claimed"], claimed or 0)
        nodes.add_metric(["online"], online or 0)
        nodes.add_metric(["offline"], (registered or 0) - (online or 0))
        nodes.add_metric(["revoked"], revoked or 0)
        for state in ("unattested", "attested", "failed"):
            trust.add_metric([state], states.get(state, 0))
        for state, count in sorted(by_rollout.items()):
            rollouts.add_metric([state], count)
        yield nodes
        yield trust
        yield rollouts


@metrics_api.get("/metrics")
@require_role("viewer")
def metrics() -> Response:
    counted = REGISTRY  # this process's counts
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
    fleet = CollectorRegistry()
    fleet.register(FleetCollector(current_services()))
    body = generate_latest(counted) + generate_latest(fleet)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
