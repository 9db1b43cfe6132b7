"""The operator API blueprint with every area's routes registered."""

from controller.ops import apps, audit, images, nodes  # noqa: F401  (registers routes)
from controller.ops.blueprint import ops_api

__all__ = ["ops_api"]
