"""Check an unpacked agent release against its signed manifest: its code digest
(attestation.measurement.code_digest, what the running agent measures into PCR 14) and
the version it declares must be the manifest's.  The format is :mod:`protocol.agent_bundle`.
"""

from __future__ import annotations

from pathlib import Path

from attestation.measurement import code_digest
from protocol.agent_bundle import PACKAGES, BundleError, bundle_version

__all__ = ["check_unpacked"]


def check_unpacked(root: Path, version: str, digest: str) -> None:
    """The unpacked code must be the release the manifest describes."""
    declared = bundle_version(root)
    if declared != version:
        raise BundleError(f"the bundle declares version {declared}, the manifest {version}")
    actual = code_digest(root / p for p in PACKAGES)
    if actual != digest:
        raise BundleError(f"code digest {actual[:16]}… is not the manifest's {digest[:16]}…")
