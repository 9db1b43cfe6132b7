"""What the controller's parts share, bound once in the app factory: settings, database,
PKI, the EK CA bundle, the download-URL key and the long-poll notifier.  Passed
explicitly below the HTTP layers."""

from __future__ import annotations

from dataclasses import dataclass

from attestation.ek_cert import EkCaBundle
from controller.settings import ControllerSettings
from controller.store.database import Database
from controller.store.notify import ConfigNotifier
from controller.store.pki import ControllerPki, LivePki
from controller.store.write_behind import WriteBehind

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    settings: ControllerSettings
    db: Database
    keys: LivePki
    """The PKI this process signs with (follows a rotation made by another replica)."""
    notifier: ConfigNotifier
    writes: WriteBehind
    """Last-seen times and metrics, written in batches."""
    ek_bundle: EkCaBundle | None = None
    """The TPM makers' CAs (settings.ek_ca_bundle); None: no TPM can enrol."""
    download_key: bytes = b""
    """HMAC key of the datastore URLs given to nodes (``<data_dir>/download-url.key``)."""

    @property
    def pki(self) -> ControllerPki:
        return self.keys.current()
