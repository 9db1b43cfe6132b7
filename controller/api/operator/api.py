"""The operator API blueprint with every area's routes registered."""

from controller.api.operator import (  # noqa: F401  (registers routes)
    adapters,
    agent_releases,
    apps,
    audit,
    batches,
    gitops,
    images,
    networks,
    nodes,
    rollouts,
    site_policies,
)
from controller.api.operator.blueprint import ops_api

__all__ = ["ops_api"]
