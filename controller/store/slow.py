"""Transactions that take long, logged with where they are, while they still run.

A transaction that never ends (a greenlet stuck while it holds SQLite's one-at-a-time
lock) never reaches a line written at its end, yet every other request of the process
waits behind it.  :class:`TransactionWatch` keeps the transactions
in flight; a daemon thread (a greenlet under gevent) looks every few seconds and logs each
one held longer than ``slow_s``, once, with the stack it is at now.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from types import FrameType
from typing import Any

import greenlet  # type: ignore[import-untyped]

__all__ = ["TransactionWatch"]

log = logging.getLogger(__name__)


def _real_thread_ident() -> int:
    """This OS thread's ident (gevent patches ``threading.get_ident`` to greenlets')."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None:
        return int(gevent_monkey.get_original("_thread", "get_ident")())
    return threading.get_ident()


@dataclass
class _InFlight:
    began: float
    glet: Any
    thread: int
    reported: bool = False


class TransactionWatch:
    def __init__(self, slow_s: float, watcher: bool = True) -> None:
        self.slow_s = slow_s
        self.watcher = watcher
        """Start the thread that logs (False: :meth:`overdue` is asked directly)."""
        self._open: dict[int, _InFlight] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def enter(self) -> int:
        token = next(self._ids)
        self._open[token] = _InFlight(time.monotonic(), greenlet.getcurrent(), _real_thread_ident())
        if self._watcher is None and self.watcher:
            with self._lock:
                if self._watcher is None:
                    self._watcher = threading.Thread(
                        target=self._watch, name="transaction-watch", daemon=True
                    )
                    self._watcher.start()
        return token

    def leave(self, token: int) -> None:
        self._open.pop(token, None)

    def overdue(self) -> list[tuple[float, str]]:
        """The transactions held longer than ``slow_s`` not reported yet: (seconds, stack);
        each is returned once."""
        now, out = time.monotonic(), []
        for entry in list(self._open.values()):
            if entry.reported or now - entry.began < self.slow_s:
                continue
            entry.reported = True
            frame: FrameType | None = getattr(entry.glet, "gr_frame", None)
            if frame is None:  # running now (or a plain thread): its thread's frame
                frame = sys._current_frames().get(entry.thread)
            stack = "".join(traceback.format_stack(frame, limit=12)) if frame else "(no stack)"
            out.append((now - entry.began, stack.rstrip()))
        return out

    def _watch(self) -> None:
        while True:
            time.sleep(max(1.0, self.slow_s / 2))
            for held, stack in self.overdue():
                log.warning("transaction held for %.1f s so far, at\n%s", held, stack)
