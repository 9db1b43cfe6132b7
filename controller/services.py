"""What the controller's parts share, bound once in the app factory: settings, database,
PKI and the long-poll notifier.  Passed explicitly below the HTTP layers."""

from __future__ import annotations

from dataclasses import dataclass

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
