"""Pre-fetch: download the images the controller names ahead of a switch-over.

``DesiredState.prefetch`` lists images a rollout will switch this node to; the agent
downloads them into its image store, in its download window and at its rate share (the
store's :class:`~node_agent.download_gate.DownloadGate`), one at a time on a thread of its
own, so reconcile passes never wait on them.  The reconciler keeps the blobs referenced
(``prefetch:<sha256>`` in ``refs.json``) while they are listed, so GC leaves them.

:meth:`Prefetcher.statuses` is what ``InfoMessage.prefetch`` carries: per image ``waiting``
(with when the window opens, or the error of the last try and its retry), ``downloading``
(bytes, total, rate), ``done`` or ``failed`` (the bytes are not the image: not retried).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from node_agent.backoff import RetryBackoff
from node_agent.clock import SYSTEM_CLOCK, Clock
from node_agent.download_gate import DownloadDeferred
from node_agent.errors import is_permanent
from node_agent.image_store import ImageError, ImageStore
from protocol.desired_state import ImageRef
from protocol.downloads import PrefetchState, PrefetchStatus

__all__ = ["PREFETCH_REF", "Prefetcher"]

log = logging.getLogger(__name__)
PREFETCH_REF = "prefetch:"
"""Prefix of the image-store references that keep pre-fetched blobs."""


@dataclass
class _Progress:
    done: int = 0
    total: int = 0
    started: float = 0.0
    start_done: int = 0
    rate: float | None = None


class Prefetcher:
    def __init__(
        self,
        store: ImageStore,
        clock: Clock = SYSTEM_CLOCK,
        on_change: Callable[[], None] | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_change = on_change
        """Called as a download advances (the agent: a rate-limited report)."""
        self.on_done = on_done
        """Called when a download ended, done or not (the agent: a pass and a report now)."""
        self.retry = RetryBackoff(base_s=5.0, max_s=300.0)
        self._wanted: list[ImageRef] = []
        self._progress: dict[str, _Progress] = {}
        self._errors: dict[str, str] = {}
        self._failed: set[str] = set()
        self._lock = threading.Condition()
        self.rounds = 0

    @staticmethod
    def refs(wanted: list[ImageRef]) -> dict[str, str]:
        """Image-store references that keep ``wanted`` from GC."""
        return {f"{PREFETCH_REF}{r.sha256}": r.sha256 for r in wanted}

    def want(self, wanted: list[ImageRef]) -> None:
        """The images of the newest desired state (others are no longer fetched)."""
        with self._lock:
            if wanted != self._wanted:
                self._wanted = list(wanted)
                keep = {r.sha256 for r in wanted}
                for table in (self._progress, self._errors):
                    for sha in set(table) - keep:
                        del table[sha]
                self._failed &= keep
                self._lock.notify_all()

    def statuses(self) -> list[PrefetchStatus]:
        with self._lock:
            wanted = list(self._wanted)
        opens = self.store.gate.opens_at()
        out = []
        for ref in wanted:
            sha = ref.sha256
            if self.store.has(sha):
                out.append(PrefetchStatus(sha256=sha, state="done", done_bytes=ref.size,
                                          total_bytes=ref.size))  # fmt: skip
                continue
            done = self.store.partial_bytes(sha)
            state: PrefetchState
            if sha in self._failed:
                state, error = "failed", self._errors.get(sha, "")
            elif self.store.busy(sha):
                state, error = "downloading", ""
            else:
                state, error = "waiting", self._errors.get(sha, "")
            p = self._progress.get(sha)
            out.append(
                PrefetchStatus(
                    sha256=sha,
                    state=state,
                    done_bytes=min(done, ref.size),
                    total_bytes=ref.size,
                    rate_bps=p.rate if p and state == "downloading" else None,
                    opens_at=opens if state == "waiting" and opens else None,
                    error=error[:512],
                )
            )
        return out

    def _progress_cb(self, ref: ImageRef) -> Callable[[str, int, int], None]:
        def report(phase: str, done: int, total: int) -> None:
            if phase != "DOWNLOADING":
                return
            now = self.clock.monotonic()
            p = self._progress.setdefault(ref.sha256, _Progress(started=now, start_done=done))
            elapsed = now - p.started
            p.done, p.total = done, total
            p.rate = (done - p.start_done) / elapsed if elapsed > 1.0 else None
            if self.on_change is not None:
                self.on_change()

        return report

    def run_once(self) -> bool:
        """Fetch the first listed image not stored yet (in this thread); True if one was
        tried.  A closed window or a retry back-off leaves it for later."""
        with self._lock:
            wanted = list(self._wanted)
        now = self.clock.monotonic()
        for ref in wanted:
            sha = ref.sha256
            if sha in self._failed or self.store.has(sha) or self.retry.waiting(sha, now) > 0:
                continue
            if self.store.gate.opens_at() is not None:
                return False
            self._progress.pop(sha, None)
            try:
                self.store.ensure(ref, self._progress_cb(ref))
            except DownloadDeferred as exc:
                self._errors[sha] = ""
                log.info("pre-fetch of %s paused: %s", ref.name, exc)
            except ImageError as exc:
                self._errors[sha] = str(exc)
                if is_permanent(exc):
                    self._failed.add(sha)
                    log.error("pre-fetch of %s failed: %s", ref.name, exc)
                else:
                    delay = self.retry.failed(sha, now)
                    log.warning("pre-fetch of %s: %s (retrying in %.0f s)", ref.name, exc, delay)
            else:
                self._errors.pop(sha, None)
                self.retry.forget(sha)
                log.info("pre-fetched %s (%s)", ref.name, sha[:12])
            with self._lock:
                self.rounds += 1
                self._lock.notify_all()
            if self.on_done is not None:
                self.on_done()
            return True
        return False

    def wait_for_round(self, after: int, timeout_s: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self.rounds > after, timeout_s)

    def start(self, stop: threading.Event, idle_s: float = 5.0) -> None:
        """Fetch on a daemon thread until ``stop``; woken by :meth:`want`."""

        def loop() -> None:
            while not stop.is_set():
                try:
                    worked = self.run_once()
                except Exception:  # never end the thread
                    log.exception("pre-fetch failed; going on")
                    worked = False
                if not worked:
                    with self._lock:
                        self._lock.wait(idle_s)

        threading.Thread(target=loop, name="prefetch", daemon=True).start()
