"""Verify an agent release manifest: signed by a controller signing cert the node trusts
(the same certs and checks as its configs), and describing the target it came with."""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from pydantic import ValidationError

from attestation import envelope, pki
from protocol.desired_state import AgentManifest, AgentTarget

__all__ = ["ManifestRefused", "verify_manifest"]


class ManifestRefused(Exception):
    """The manifest is not signed by a trusted signer or does not match its target."""


def verify_manifest(target: AgentTarget, signers: Iterable[x509.Certificate]) -> AgentManifest:
    """The verified manifest of ``target``; raises ManifestRefused."""
    known = {pki.cert_sha256(cert): cert for cert in signers}
    try:
        opened = envelope.open_envelope(target.manifest.model_dump(), known.get, max_skew_s=None)
    except envelope.EnvelopeError as exc:
        raise ManifestRefused(f"agent manifest signature refused: {exc}") from exc
    try:
        manifest = AgentManifest.model_validate(opened.body)
    except ValidationError as exc:
        raise ManifestRefused(f"agent manifest does not match the schema: {exc}") from exc
    for field, want in (
        ("version", target.version),
        ("sha256", target.image.sha256),
        ("size", target.image.size),
    ):
        got = getattr(manifest, field)
        if got != want:
            raise ManifestRefused(f"agent manifest {field} {got!r} is not the target's {want!r}")
    return manifest
