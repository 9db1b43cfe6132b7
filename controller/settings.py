"""Controller settings: one frozen dataclass, read from the data dir and the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attestation.ek_cert import EkCaBundle

__all__ = ["ControllerSettings"]


@dataclass(frozen=True)
class ControllerSettings:
    data_dir: Path
    """Holds the PKI (``pki/``), the SQLite database and the image datastore."""

    public_url: str = "https://127.0.0.1:8443"
    """The URL nodes use to reach this controller (goes into bundles and image URLs)."""

    db_url: str = ""
    """SQLAlchemy URL; empty means ``sqlite:///<data_dir>/outpost.db``."""

    max_device_body_bytes: int = 1024 * 1024
    """Largest device API request accepted (413 beyond)."""

    max_image_bytes: int = 2 * 1024**3
    """Largest image upload accepted by the datastore."""

    max_clock_skew_s: float = 300.0
    """Signed device requests older or newer than this are refused."""

    node_config_interval_s: float = 60.0
    """Config poll interval sent to nodes in their desired state (EVE's default: 60 s)."""

    max_parked_polls: int = 25_000
    """Long-polls one process holds at once; more are refused (503, Retry-After)."""

    tls_hosts: tuple[str, ...] = field(default=("localhost", "127.0.0.1"))
    """Names and addresses put into the TLS server certificate at ``init``."""

    ek_ca_bundle: str = ""
    """PEM file or directory of the TPM makers' CAs an EK certificate must be issued by
    (``init --ek-ca-bundle``); empty: no TPM can enrol (and TPM-less nodes only when
    the trust policy allows them)."""

    allow_unpinned_claims: bool = False
    """Whether a claim may name only a serial (the first registration with any identity
    wins, audited as such).  Off: a claim pins the node's device certificate (and may pin
    its EK certificate), or comes from approving a pending registration."""

    signing_grace_s: float = 86400.0
    """After ``rotate-signing``, how long the old signing key is kept on disk before the
    background job deletes it (nodes stop trusting it with their next config)."""

    max_pending_per_batch: int = 250
    """Pending registrations recorded per onboarding batch (more are refused, not kept)."""

    max_pending_per_source: int = 50
    """Pending registrations recorded per client address."""

    def load_ek_bundle(self) -> EkCaBundle | None:
        """The EK CA bundle (None: none set); an unreadable or empty one raises
        EkCertError, which stops the controller rather than silently enrolling nothing."""
        if not self.ek_ca_bundle:
            return None
        return EkCaBundle.load(Path(self.ek_ca_bundle))

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def datastore_dir(self) -> Path:
        return self.data_dir / "datastore"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'outpost.db'}"
