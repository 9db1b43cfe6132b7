"""The periodic git sync: a sync whenever the source's interval has passed."""

from __future__ import annotations

from controller.gitops.sync import sync
from controller.services import Services
from controller.store.models import GitSource, utcnow

__all__ = ["sync_if_due"]


def _due(services: Services) -> bool:
    with services.db.transaction() as s:
        source = s.get(GitSource, 1)
        if source is None or source.interval_s <= 0:
            return False
        last = source.attempted_at
        return last is None or (utcnow() - last).total_seconds() >= source.interval_s


def sync_if_due(services: Services) -> None:
    """One turn of the periodic job (the background runner calls it every second)."""
    if _due(services):
        sync(services)
