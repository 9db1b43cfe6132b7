"""The periodic git sync: a daemon thread syncing every ``GitSource.interval_s``."""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask

from controller.db import utcnow
from controller.gitops.models import GitSource
from controller.gitops.sync import sync

__all__ = ["start_git_worker"]

log = logging.getLogger(__name__)
POLL_S = 1.0


def _due(app: Flask) -> bool:
    with app.extensions["outpost"].db.transaction() as s:
        source = s.get(GitSource, 1)
        if source is None or source.interval_s <= 0:
            return False
        last = source.attempted_at
        return last is None or (utcnow() - last).total_seconds() >= source.interval_s


def _loop(app: Flask, stop: threading.Event) -> None:
    while not stop.wait(POLL_S):
        try:
            with app.app_context():
                if _due(app):
                    sync(app.extensions["outpost"])
        except Exception:  # the database away for a moment: the next turn tries again
            log.exception("periodic git sync failed")
            time.sleep(POLL_S)


def start_git_worker(app: Flask, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=_loop, args=(app, stop), name="git-sync", daemon=True)
    thread.start()
    return thread
