"""Verify a signed config: signer chains to the pinned root as a config-signing cert,
the document is for this node, valid against the schema, and not older than what we hold
(the checkpoint) nor, without a checkpoint, than the generation floor registration gave.

Rotation retires keys: a config from an unknown signer makes the node fetch the
controller's ``certs``; once a config signed by one of the listed certs is accepted,
signing certs the controller no longer lists are dropped, so a config signed by a
rotated-out key is refused from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import ValidationError

from attestation import envelope, pki
from protocol.desired_state import DesiredState

__all__ = ["ConfigRejected", "ConfigVerifier"]

log = logging.getLogger(__name__)


class ConfigRejected(Exception):
    """The config is not trusted or not acceptable; nothing was applied."""


class ConfigVerifier:
    def __init__(self, root: x509.Certificate, signing: Iterable[x509.Certificate] = ()) -> None:
        self.root = root
        self._signers: dict[str, x509.Certificate] = {}
        self._listed: set[str] | None = None
        """The controller's list from the last ``certs`` fetch, until a config signed by
        one of them retires the rest."""
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

    def retain(self, keep: set[str]) -> list[str]:
        """Forget every signing cert whose sha256 is not in ``keep``; the dropped ones."""
        dropped = [sha for sha in self._signers if sha not in keep]
        for sha in dropped:
            del self._signers[sha]
        return dropped

    def add_listed(self, certs: Iterable[x509.Certificate]) -> None:
        """Add the signing certs the controller lists now (``certs``) and remember the
        list: the next accepted config signed by one of them retires the others."""
        certs = list(certs)
        self.add_signers(certs)
        self._listed = {pki.cert_sha256(c) for c in certs}

    def verify_fetched(
        self,
        wire: Any,
        node_uuid: str,
        current: DesiredState | None,
        floor: int,
        fetch_signing: Callable[[], Iterable[x509.Certificate]],
    ) -> tuple[DesiredState, bool]:
        """Verify a config the controller just sent (see the module docstring).

        ``fetch_signing`` returns the controller's current signing certs (``certs``); it is
        called only for an unknown signer. Returns the document and whether the set of
        trusted signers changed (to be saved).
        """
        signer = wire.get("sender_cert_sha256", "") if isinstance(wire, dict) else ""
        changed = False
        if not self.knows(signer):
            self.add_listed(fetch_signing())
            changed = True
        doc = self.verify(wire, node_uuid, current, floor)
        if self._listed is not None and signer in self._listed:
            for sha in self.retain(self._listed):
                log.info("signing cert %s… retired: the controller no longer lists it", sha[:16])
                changed = True
            self._listed = None
        return doc, changed

    def verify(
        self, wire: Any, node_uuid: str, current: DesiredState | None = None, floor: int = 0
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
        if doc.generation < floor:
            raise ConfigRejected(
                f"config generation {doc.generation} is older than the generation floor"
                f" {floor} the node got at registration (rollback refused)"
            )
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
