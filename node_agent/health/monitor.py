"""The probes of every running app, on a thread of their own, and their verdicts.

The reconciler tells the monitor after each pass which apps run with a probe
(:meth:`HealthMonitor.watch`: spec digest, probe, the app's address), when it started one
(:meth:`started`) and when it restarted one for failing its liveness probe
(:meth:`liveness_restart`); it reads :meth:`health` into ``AppStatus.health`` and
:meth:`restart_due` to know an app must be restarted (``on_unhealthy: restart``).

The thread (:meth:`start`) runs each due probe (every ``interval_s`` from the app's first
sighting), one at a time, each bounded by its timeout, and calls ``on_change`` (the agent
wakes its main loop and reports) when a verdict changes.  Verdicts are kept per app spec in
``<state>/app-health.json`` (atomic writes, on every change of status), so an agent
restart neither resets a healthy app to "starting" nor forgets an unhealthy one; a new spec
starts afresh.  :attr:`probes_run` and :meth:`wait_for_probes` let tests wait on probes
instead of sleeping; :meth:`run_due` runs the due probes in the caller's thread.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from attestation.files import atomic_write
from node_agent.clock import SYSTEM_CLOCK, Clock
from node_agent.health.probes import ExecFn, ProbeResult, run_probe
from node_agent.health.tracker import ProbeTracker, TrackerState
from protocol.health import AppHealth, HealthProbe

__all__ = ["HealthMonitor", "ProbeTarget"]

log = logging.getLogger(__name__)
_MAX_APPS = 256
RunFn = Callable[[HealthProbe, str, "str | None", "ExecFn | None"], ProbeResult]


@dataclass(frozen=True)
class ProbeTarget:
    uuid: str
    name: str
    spec: str
    """The digest of the app spec being probed (verdicts are kept per spec)."""
    probe: HealthProbe
    address: str | None
    """http/tcp: the app's address on the probe's network (None: not known yet)."""


def _valid(state: TrackerState) -> TrackerState | None:
    """A kept state that still reads as a report (else it is dropped)."""
    try:
        state.report()
    except ValueError:
        return None
    return state


class HealthMonitor:
    def __init__(
        self,
        path: Path,
        clock: Clock = SYSTEM_CLOCK,
        exec_fn: ExecFn | None = None,
        on_change: Callable[[], None] | None = None,
        run: RunFn = run_probe,
    ) -> None:
        self.path = path
        self.clock = clock
        self.exec_fn = exec_fn
        self.on_change = on_change
        self._run = run
        self._lock = threading.Condition()
        self._states = self._load()
        self._trackers: dict[str, ProbeTracker] = {}
        self._targets: dict[str, ProbeTarget] = {}
        self._due: dict[str, float] = {}
        self.probes_run = 0
        self._thread: threading.Thread | None = None

    # -- persistence --------------------------------------------------------------------

    def _load(self) -> dict[str, TrackerState]:
        try:
            raw = json.loads(self.path.read_text())
            states = {
                str(uuid): state
                for uuid, value in raw.get("apps", {}).items()
                if isinstance(value, dict) and (state := _valid(TrackerState(**value)))
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.error("app health %s unreadable (%s): probing afresh", self.path, exc)
            return {}
        return dict(list(states.items())[:_MAX_APPS])

    def _save(self) -> None:
        body = {
            "version": 1,
            "apps": {u: dataclasses.asdict(s) for u, s in sorted(self._states.items())},
        }
        atomic_write(self.path, json.dumps(body, indent=1).encode(), mode=0o644)

    # -- what the reconciler calls -------------------------------------------------------

    def _tracker(self, uuid: str, spec: str, probe: HealthProbe) -> ProbeTracker:
        """The app's tracker for ``spec`` (made from the kept state, or afresh)."""
        tracker = self._trackers.get(uuid)
        if tracker is not None and tracker.state.spec == spec:
            tracker.probe = probe
            return tracker
        kept = self._states.get(uuid)
        if kept is not None and kept.spec == spec:
            tracker = ProbeTracker(probe, kept)
        else:
            tracker = ProbeTracker.fresh(probe, spec, self.clock.time())
            self._states[uuid] = tracker.state
            self._save()
        self._trackers[uuid] = tracker
        return tracker

    def watch(self, targets: Mapping[str, ProbeTarget]) -> None:
        """Probe exactly these running apps from now on."""
        with self._lock:
            now = self.clock.monotonic()
            for uuid, target in targets.items():
                self._tracker(uuid, target.spec, target.probe)
                if uuid not in self._targets:
                    self._due[uuid] = now
                self._targets[uuid] = target
            for uuid in set(self._targets) - set(targets):
                del self._targets[uuid]
                self._due.pop(uuid, None)
            self._lock.notify_all()

    def started(self, uuid: str, spec: str, probe: HealthProbe) -> None:
        """The app's workload was just started: a new start period."""
        with self._lock:
            self._tracker(uuid, spec, probe).restarted(self.clock.time(), liveness=False)
            self._save()

    def liveness_restart(self, uuid: str) -> None:
        """The app is being restarted because it turned unhealthy (counted)."""
        with self._lock:
            tracker = self._trackers.get(uuid)
            if tracker is not None:
                tracker.restarted(self.clock.time(), liveness=True)
                self._save()
            self._targets.pop(uuid, None)
            self._due.pop(uuid, None)

    def keep_only(self, uuids: Iterable[str]) -> None:
        """Forget apps that left the config."""
        keep = set(uuids)
        with self._lock:
            for table in (self._trackers, self._targets, self._due):
                for uuid in set(table) - keep:
                    del table[uuid]
            if set(self._states) - keep:
                self._states = {u: s for u, s in self._states.items() if u in keep}
                self._save()

    def health(self, uuid: str, spec: str) -> AppHealth | None:
        """The verdict for the app's current spec (None: never probed under it)."""
        with self._lock:
            tracker = self._trackers.get(uuid)
            if tracker is not None and tracker.state.spec == spec:
                return tracker.report()
            kept = self._states.get(uuid)
            if kept is not None and kept.spec == spec:
                return kept.report()
            return None

    def restart_due(self, uuid: str) -> str | None:
        """The reason, when the app is unhealthy and its probe asks for a restart."""
        with self._lock:
            tracker = self._trackers.get(uuid)
            if (
                tracker is None
                or uuid not in self._targets
                or tracker.probe.on_unhealthy != "restart"
                or tracker.state.status != "unhealthy"
            ):
                return None
            return tracker.state.last_failure or "unhealthy"

    # -- running probes ------------------------------------------------------------------

    def next_due_in(self) -> float | None:
        with self._lock:
            if not self._due:
                return None
            return max(0.0, min(self._due.values()) - self.clock.monotonic())

    def run_due(self) -> int:
        """Run every probe due now, in this thread; how many ran."""
        ran = 0
        while True:
            with self._lock:
                now = self.clock.monotonic()
                due = [u for u, at in self._due.items() if at <= now]
                if not due:
                    break
                uuid = min(due, key=lambda u: self._due[u])
                target = self._targets[uuid]
                self._due[uuid] = now + target.probe.interval_s
            result = self._run(target.probe, uuid, target.address, self.exec_fn)
            changed = self._record(target, result)
            ran += 1
            if changed and self.on_change is not None:
                self.on_change()
        return ran

    def _record(self, target: ProbeTarget, result: ProbeResult) -> bool:
        with self._lock:
            self.probes_run += 1
            tracker = self._trackers.get(target.uuid)
            changed = False
            if (
                tracker is not None
                and tracker.state.spec == target.spec
                and target.uuid in self._targets
            ):
                changed = tracker.record(result.ok, result.detail, self.clock.time())
                if changed:
                    log.info(
                        "app %s (%s): health %s%s",
                        target.name,
                        target.uuid[:8],
                        tracker.state.status,
                        f": {result.detail}" if not result.ok else "",
                    )
                    self._save()
            self._lock.notify_all()
            return changed

    def wait_for_probes(self, after: int, timeout_s: float) -> bool:
        """Block until more than ``after`` probe results were recorded; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self.probes_run > after, timeout_s)

    def start(self, stop: threading.Event) -> None:
        """Run due probes on a daemon thread until ``stop`` is set."""

        def loop() -> None:
            while not stop.is_set():
                try:
                    self.run_due()
                except Exception:  # a probe must never end the thread
                    log.exception("health probes failed; going on")
                wait = self.next_due_in()
                with self._lock:
                    self._lock.wait(min(wait if wait is not None else 1.0, 1.0))

        self._thread = threading.Thread(target=loop, name="health-probes", daemon=True)
        self._thread.start()
