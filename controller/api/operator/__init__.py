"""The operator API (``/api/v1/``): token auth with roles; every change audited.

One module per area (``nodes``, ``apps``, ``images``, ``networks``, ``audit`` …);
``controller.api.operator.api`` imports them, which registers their routes on the
blueprint it exports.
"""
