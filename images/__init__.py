"""Outpost test images: tiny, deterministic VM and container images built from Debian packages.

Entry points live in :mod:`images.build` (``build_all``, ``load_manifest`` and the
``python -m images.build`` command line).
"""
