"""What the controller's parts share, bound once in the app factory: settings, database,
PKI and the long-poll notifier.  Passed explicitly below the HTTP layers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from controller.settings import ControllerSettings
from controller.store.database import Database
from controller.store.notify import ConfigNotifier
from controller.store.pki import ControllerPki
from controller.store.write_behind import WriteBehind

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    settings: ControllerSettings
    db: Database
    pki: ControllerPki
    notifier: ConfigNotifier
    writes: WriteBehind
    """Last-seen times and metrics, written in batches."""
    git_sync_lock: threading.Lock = field(default_factory=threading.Lock, compare=False)
    """One git sync at a time in this process (the API's and the periodic job's).  Made
    with the services, i.e. in the worker after gevent patched ``threading``: a lock made
    at import time (in gunicorn's master) would be an OS lock that blocks the whole
    worker while another greenlet holds it during a fetch."""
