"""The rollout engine's clock: a daemon thread calling ``engine.tick`` every second."""

from __future__ import annotations

import logging
import threading

from flask import Flask

from controller.rollouts.engine import tick

__all__ = ["TICK_S", "start_rollout_worker"]

log = logging.getLogger(__name__)
TICK_S = 1.0


def _loop(app: Flask, stop: threading.Event) -> None:
    while not stop.wait(TICK_S):
        try:
            with app.app_context():
                tick(app.extensions["outpost"])
        except Exception:  # the database away for a moment: the next tick tries again
            log.exception("rollout tick failed")


def start_rollout_worker(app: Flask, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=_loop, args=(app, stop), name="rollouts", daemon=True)
    thread.start()
    return thread
