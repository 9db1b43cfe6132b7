"""The operator API (``/api/v1/``): token auth with roles; every change audited.

One module per area; importing them registers their routes on :data:`ops_api`.
"""

from controller.ops import apps, audit, images, nodes  # noqa: F401  (registers routes)
from controller.ops.blueprint import ops_api

__all__ = ["ops_api"]
