"""The config checkpoint: the last verified signed config, kept on disk for autonomy.

Stored as received (the envelope), so it is verified again when loaded at start,
before the controller answers.  The controller's signing certs are kept beside it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from attestation import pki
from attestation.files import atomic_write
from node_agent.config_verifier import ConfigRejected, ConfigVerifier
from protocol.desired_state import DesiredState

__all__ = ["Checkpoint"]

log = logging.getLogger(__name__)


class Checkpoint:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "checkpoint.json"
        self.signers_path = state_dir / "identity" / "controller-signing.pem"

    def save_signers(self, verifier: ConfigVerifier) -> None:
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in verifier.signers)
        atomic_write(self.signers_path, pem)

    def load_signers(self) -> list[Any]:
        if not self.signers_path.exists():
            return []
        return [pki.load_cert(p) for p in _split_pem(self.signers_path.read_bytes())]

    def save(self, wire: Any) -> None:
        atomic_write(self.path, json.dumps({"envelope": wire}).encode(), mode=0o600)

    def load(self, verifier: ConfigVerifier, node_uuid: str, floor: int = 0) -> DesiredState | None:
        """The checkpointed config if present and still verifies (signer still trusted,
        generation not below ``floor``); None otherwise."""
        if not self.path.exists():
            return None
        try:
            wire = json.loads(self.path.read_text())["envelope"]
            return verifier.verify(wire, node_uuid, floor=floor)
        except (ValueError, KeyError, ConfigRejected) as exc:
            log.error("checkpoint %s unusable, ignoring it: %s", self.path, exc)
            return None


def _split_pem(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [p.strip() + b"\n" + marker + b"\n" for p in data.split(marker) if p.strip()]
