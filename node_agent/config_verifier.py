"""Verify a signed config: signer chains to the pinned root as a config-signing cert,
the document is for this node, valid against the schema, and not older than what we hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import ValidationError

from attestation import envelope, pki
from protocol.desired_state import DesiredState

__all__ = ["ConfigRejected", "ConfigVerifier"]


class ConfigRejected(Exception):
    """The config is not trusted or not acceptable; nothing was applied."""


class ConfigVerifier:
    def __init__(self, root: x509.Certificate, signing: Iterable[x509.Certificate] = ()) -> None:
        self.root = root
        self._signers: dict[str, x509.Certificate] = {}
        self.add_signers(signing)

    def add_signers(self, certs: Iterable[x509.Certificate]) -> None:
        """Accept signing certs only if the pinned root issued them for code signing."""
        for cert in certs:
            try:
                pki.verify_chain(cert, self.root, usage=ExtendedKeyUsageOID.CODE_SIGNING)
            except pki.CertError as exc:
                raise ConfigRejected(f"controller signing certificate refused: {exc}") from exc
            self._signers[pki.cert_sha256(cert)] = cert

    def knows(self, signer_sha256: str) -> bool:
        return signer_sha256 in self._signers

    @property
    def signers(self) -> list[x509.Certificate]:
        return list(self._signers.values())

    def verify(
        self, wire: Any, node_uuid: str, current: DesiredState | None = None
    ) -> DesiredState:
        try:
            opened = envelope.open_envelope(wire, self._signers.get, max_skew_s=None)
        except envelope.EnvelopeError as exc:
            raise ConfigRejected(f"config signature refused: {exc}") from exc
        try:
            doc = DesiredState.model_validate(opened.body)
        except ValidationError as exc:
            raise ConfigRejected(f"config does not match the schema: {exc}") from exc
        if doc.node_uuid != node_uuid:
            raise ConfigRejected(f"config is for node {doc.node_uuid}, not {node_uuid}")
        if current is not None:
            if doc.generation < current.generation:
                raise ConfigRejected(
                    f"config generation {doc.generation} is older than the checkpoint's"
                    f" {current.generation} (rollback refused)"
                )
            if (
                doc.generation == current.generation
                and doc.content_hash() != current.content_hash()
            ):
                raise ConfigRejected(
                    f"config generation {doc.generation} differs from the checkpoint's content"
                )
        return doc
