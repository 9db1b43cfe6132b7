"""What the controller's parts share, bound once in the app factory: settings, database,
PKI, the EK CA bundle, the download-URL key and the long-poll notifier.  Passed
explicitly below the HTTP layers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

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
    git_sync_lock: threading.Lock = field(default_factory=lambda: threading.Lock(), compare=False)
    """One git sync at a time in this process (the API's and the periodic job's).  Made
    with the services, i.e. in the worker after gevent patched ``threading``, and looked
    up there: ``default_factory=threading.Lock`` would keep the function of import time
    (gunicorn's master, unpatched), an OS lock whose second taker blocks the whole worker
    while the greenlet holding it cannot run to release it (the fuzz test's stalls)."""
    ek_bundle: EkCaBundle | None = None
    """The TPM makers' CAs (settings.ek_ca_bundle); None: no TPM can enrol."""
    download_key: bytes = b""
    """HMAC key of the datastore URLs given to nodes (``<data_dir>/download-url.key``)."""

    @property
    def pki(self) -> ControllerPki:
        return self.keys.current()
