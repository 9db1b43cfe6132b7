"""The operator API blueprint with every area's routes registered."""

from controller.ops import (  # noqa: F401  (registers routes)
    adapters,
    agent_releases,
    apps,
    audit,
    gitops,
    images,
    nodes,
    rollouts,
)
from controller.ops.blueprint import ops_api

__all__ = ["ops_api"]
