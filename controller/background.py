"""The controller's periodic jobs (git sync, the rollout engine's tick), each in a daemon
thread that calls it every second; a failed turn is logged and the next one tries again
(the database away for a moment)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from controller.gitops.worker import sync_if_due
from controller.rollouts.engine import tick
from controller.services import Services

__all__ = ["JOBS", "Job", "start_jobs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[Services], object]
    every_s: float = 1.0


JOBS = (Job("git-sync", sync_if_due), Job("rollouts", tick))


def _loop(job: Job, services: Services, stop: threading.Event) -> None:
    while not stop.wait(job.every_s):
        try:
            job.run(services)
        except Exception:
            log.exception("background job %s failed; the next turn tries again", job.name)


def start_jobs(services: Services, stop: threading.Event) -> list[threading.Thread]:
    threads = []
    for job in JOBS:
        thread = threading.Thread(
            target=_loop, args=(job, services, stop), name=job.name, daemon=True
        )
        thread.start()
        threads.append(thread)
    return threads
