"""What every request handler needs, bound once in the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from controller.config_notify import ConfigNotifier
from controller.db import Database
from controller.pki_store import ControllerPki
from controller.settings import ControllerSettings

__all__ = ["Services", "current_services"]


@dataclass(frozen=True)
class Services:
    settings: ControllerSettings
    db: Database
    pki: ControllerPki
    notifier: ConfigNotifier


def current_services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions["outpost"]  # type: ignore[no-any-return]
