"""What the reconciler knows about each app between passes, and its ``AppStatus``.

One :class:`AppRecords` per reconciler: per app the state, the error (with the time it
first appeared), a detail of how the workload is (``exited (code 3)``), and the progress
of its image while it downloads or verifies (percent, bytes, rate measured from the
phase's first report on the injected clock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from node_agent.clock import Clock
from node_agent.image_store import Progress
from node_agent.restart_ledger import StopRecord
from protocol.desired_state import AppSpec
from protocol.health import AppHealth
from protocol.messages import MAX_RATE_BPS, AppState, AppStatus

__all__ = ["AppRecords", "ImageProgress"]

log = logging.getLogger(__name__)
_PROGRESS_PHASES = (AppState.DOWNLOADING, AppState.VERIFYING)


@dataclass(frozen=True)
class ImageProgress:
    done: int
    total: int
    rate_bps: float | None

    @property
    def pct(self) -> int | None:
        return min(100, self.done * 100 // self.total) if self.total > 0 else None


@dataclass(frozen=True)
class _Record:
    state: AppState
    error: str = ""
    error_time: float | None = None
    detail: str = ""
    progress: ImageProgress | None = None
    waiting: str = ""


@dataclass
class _PhaseStart:
    phase: AppState
    at: float
    done: int


class AppRecords:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._records: dict[str, _Record] = {}
        self._phases: dict[str, _PhaseStart] = {}

    def uuids(self) -> set[str]:
        return set(self._records)

    def forget(self, uuid: str) -> None:
        self._records.pop(uuid, None)
        self._phases.pop(uuid, None)

    def state(self, uuid: str) -> AppState | None:
        rec = self._records.get(uuid)
        return rec.state if rec else None

    def error(self, uuid: str) -> str:
        rec = self._records.get(uuid)
        return rec.error if rec else ""

    def detail(self, uuid: str) -> str:
        rec = self._records.get(uuid)
        return (rec.error or rec.detail) if rec else ""

    def set(
        self,
        app: AppSpec,
        state: AppState,
        error: str = "",
        *,
        detail: str = "",
        progress: ImageProgress | None = None,
        waiting: str = "",
    ) -> None:
        old = self._records.get(app.uuid)
        if old is None or old.state != state or old.error != error:
            log.info(
                "app %s (%s): %s%s",
                app.name,
                app.uuid[:8],
                state.value,
                f": {error}" if error else "",
            )
        when = None
        if error:
            same = old is not None and old.state == state and old.error == error
            when = old.error_time if same and old is not None else self.clock.time()
        if state not in _PROGRESS_PHASES:
            self._phases.pop(app.uuid, None)
        self._records[app.uuid] = _Record(state, error, when, detail, progress, waiting[:256])

    def progress_callback(self, app: AppSpec, notify: Callable[[], None] | None) -> Progress:
        """The image store's progress callback for ``app``: state and progress, then notify."""

        def report(phase_name: str, done: int, total: int) -> None:
            phase = AppState(phase_name)
            now = self.clock.monotonic()
            start = self._phases.get(app.uuid)
            if start is None or start.phase is not phase:
                start = self._phases[app.uuid] = _PhaseStart(phase, now, done)
            elapsed = now - start.at
            rate = (done - start.done) / elapsed if elapsed > 0 else None
            if rate is not None:
                rate = min(max(rate, 0.0), MAX_RATE_BPS)
            old = self._records.get(app.uuid)
            progress = ImageProgress(done, total, rate)
            self.set(app, phase, progress=progress)
            self._phases[app.uuid] = start
            changed = (
                old is None
                or old.state is not phase
                or old.progress is None
                or old.progress.pct != progress.pct
            )
            if notify is not None and changed:
                notify()

        return report

    def status(
        self,
        app: AppSpec,
        stops: StopRecord | None,
        *,
        backoff_s: float | None,
        retry_at: float | None,
        health: AppHealth | None = None,
    ) -> AppStatus:
        rec = self._records.get(app.uuid, _Record(AppState.INITIAL))
        progress = rec.progress if rec.state in _PROGRESS_PHASES else None
        return AppStatus(
            uuid=app.uuid,
            name=app.name,
            state=rec.state,
            error=rec.error[:4000],
            error_time=rec.error_time,
            image_sha256=app.image.sha256,
            progress_pct=progress.pct if progress else None,
            progress_bytes=progress.done if progress else None,
            progress_total_bytes=progress.total if progress else None,
            progress_rate_bps=progress.rate_bps if progress else None,
            restarts=stops.restarts if stops else 0,
            last_exit_code=stops.last_exit_code if stops else None,
            last_stop_reason=stops.last_stop_reason if stops else "",
            backoff_s=backoff_s,
            retry_at=retry_at,
            health=health,
            waiting=rec.waiting,
        )
