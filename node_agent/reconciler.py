"""The level-triggered reconciler: make the runtimes match the desired state.

Each pass re-reads the desired state (the checkpoint) and the actual state (the
runtimes' labelled workloads and the image store) and acts on the difference:

    networks (firewall, bridges, dnsmasq)        → realised first, through the network hook
    desired running, missing/stopped             → fetch+verify image → start
    desired stopped, running                     → stop
    running, not desired                         → remove
    running, but made from another spec (image,  → remove, start from the new spec
      env, command, resources, adapters,
      networks, its planned interfaces)
    restart/purge counter raised                 → stop/remove (+ wipe its state), start again
    running before, now stopped (crash, guest    → start again after a back-off: at once the
      powered off) while desired running            first time, then 1 s, 2 s, … up to 60 s
                                                    until it has run 60 s in one go
    blobs no app needs                           → garbage-collect

Whether a workload is made from the current spec is decided in one place: the digest of
the app's spec and its planned interfaces (:func:`node_agent.spec_digest.spec_digest`) is
computed once per pass, handed to the runtime in the ``WorkloadSpec``, stored with the
workload (podman label, domain metadata) and compared by
:func:`node_agent.runtime.base.same_spec`; so a change is seen after an agent restart too.

States tell what happens: an app that stopped on its own twice or more without a stable
run between is in CRASHLOOP, with its restart count (kept across agent restarts in
``app-restarts.json``), the last exit code or libvirt reason, and the current back-off.
Failures are recorded per app (ERROR, the reason and its time); one app's failure never
stops the others.  A temporary failure (:class:`node_agent.errors.TemporaryError`: a
download interrupted, a daemon busy; also anything unclassified) is retried after a
per-app exponential back-off (2 s, 4 s, … 5 min); a permanent one (an image whose digest
does not match, a spec the runtime refuses) is not retried until the app's spec or its
restart/purge counter changes.  An app that was started but has not been seen RUNNING
within its start window (``start_window_s``) is in ERROR with the reason.  All waits read
the injected :class:`~node_agent.clock.Clock`; :meth:`Reconciler.wake_in` says when the
next back-off ends (waking up then is the caller's job).

What a runtime is given is built by :mod:`node_agent.workload_spec` (VM overlays and data
disks, passthrough checked again before each start); purge deletes the app's writable
state (:func:`node_agent.volumes.wipe_app_state`), so the next start makes it blank; an
app that left the config has its disks deleted.

While an image downloads or verifies, its progress (percent, bytes, rate) is kept in the
app's status and ``on_progress`` (the agent: a rate-limited info report) is called.
Downloads follow the node's download policy (``settings.downloads``: window and rate
share, enforced by the store's gate): while the window is closed the app is DOWNLOADING
with ``waiting`` saying so.  A new version's image is fetched before the old workload is
stopped, so the switch-over itself is only stop old, start new; an image the pre-fetcher
is downloading is not waited for in the pass (DOWNLOADING until it is stored).  Images of
``desired.prefetch`` stay referenced (``prefetch:<sha256>``) so GC keeps them.

Apps with a health probe (``AppSpec.health``) are probed by the
:class:`~node_agent.health.HealthMonitor` while RUNNING; its verdict is the status's
``health``, and an app whose probe says ``on_unhealthy: restart`` is stopped and started
again when it turns unhealthy, a restart counted like a crash (``restarts``, the
back-off, ``last_stop_reason: unhealthy: …``).

Commands act once per counter increase (``app_counters``); an app with a start delay
is first started that long after the agent started.

An app on app networks gets its interfaces from the network hook (``NodePorts`` or
``NodeNetwork``: ``apply(desired)`` then ``workload_networks(uuid)``). When the hook
refuses a config, apps whose networks are in force keep running on them; the others are
in ERROR with the reason.

:attr:`Reconciler.passes` counts finished passes (:meth:`Reconciler.wait_for_pass` waits
for one), so tests and tools wait on an observable instead of sleeping.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from node_agent import volumes
from node_agent.app_counters import ActedCounters
from node_agent.app_records import AppRecords, ImageProgress
from node_agent.backoff import CrashBackoff, RetryBackoff
from node_agent.clock import SYSTEM_CLOCK, Clock
from node_agent.download_gate import DownloadDeferred
from node_agent.errors import is_permanent
from node_agent.health import HealthMonitor, ProbeTarget
from node_agent.image_store import ImageError, ImageStore
from node_agent.network import NetworkError, WorkloadNetworks
from node_agent.prefetch import Prefetcher
from node_agent.restart_ledger import RestartLedger
from node_agent.runtime.base import (
    Runtime,
    RuntimeError_,
    Workload,
    WorkloadState,
    same_spec,
)
from node_agent.spec_digest import (
    LEGACY_SPEC_FILE,
    legacy_spec_digest,
    spec_digest,
    url_spec_digest,
)
from node_agent.workload_spec import WorkloadPlace, build_workload_spec
from protocol.desired_state import AppSpec, DesiredState
from protocol.messages import AppState, AppStatus

__all__ = ["START_WINDOW_S", "CrashBackoff", "NetworkHook", "Reconciler", "RetryBackoff"]

log = logging.getLogger(__name__)

START_WINDOW_S = 300.0
"""An app started but not seen RUNNING this long after its first start is in ERROR."""
PASS_ERRORS = (RuntimeError_, ImageError, NetworkError, OSError)
"""Failures of one app's pass; the others go on."""


class NetworkHook(Protocol):
    """The node's networking as the reconciler uses it (``NodePorts``, ``NodeNetwork``)."""

    def apply(self, desired: DesiredState | None) -> object:
        """Realise networks/firewall for ``desired``; raise NetworkError when refused."""
        ...

    def workload_networks(self, app_uuid: str) -> WorkloadNetworks:
        """The app's interfaces in the plan in force (empty when none)."""
        ...


class Reconciler:
    def __init__(
        self,
        node_uuid: str,
        store: ImageStore,
        runtimes: Mapping[str, Runtime],
        apps_dir: Path,
        network: NetworkHook | None = None,
        counters: ActedCounters | None = None,
        *,
        sysfs_root: Path = Path("/sys"),
        on_progress: Callable[[], None] | None = None,
        backoff: CrashBackoff | None = None,
        retry: RetryBackoff | None = None,
        vols: volumes.Volumes | None = None,
        clock: Clock = SYSTEM_CLOCK,
        start_window_s: float = START_WINDOW_S,
        health: HealthMonitor | None = None,
    ) -> None:
        self.node_uuid = node_uuid
        self.store = store
        self.runtimes = runtimes
        self.apps_dir = apps_dir
        self.network = network
        self.clock = clock
        self.desired: DesiredState | None = None
        """The desired state of the latest pass (the one :meth:`statuses` describes)."""
        self._desired: dict[str, AppSpec] = {}
        self._net_error = ""
        self.counters = counters or ActedCounters(apps_dir.parent / "app-counters.json")
        self._since = clock.monotonic()
        self.sysfs_root = sysfs_root
        self.on_progress = on_progress
        self.backoff = backoff or CrashBackoff()
        self.retry = retry or RetryBackoff()
        self.ledger = RestartLedger(apps_dir.parent / "app-restarts.json")
        self.records = AppRecords(clock)
        container = runtimes.get("container")
        self.health = health or HealthMonitor(
            apps_dir.parent / "app-health.json", clock, getattr(container, "exec", None)
        )
        self._nets: dict[str, WorkloadNetworks] = {}
        self._liveness: dict[str, str] = {}
        """Per app: why it is being restarted for its health (the stop's reason)."""
        self.start_window_s = start_window_s
        self.volumes = vols or volumes.Volumes()
        self._digest: dict[str, str] = {}
        """Per app: the spec digest of the latest pass (restart counts are kept for it)."""
        self._failed: dict[str, tuple[str, str]] = {}
        """Per app: (the app as it failed, reason) of a permanent failure."""
        self._boot_since: dict[str, float] = {}
        """Per app: when it was first started and not yet seen RUNNING."""
        self._not_legacy: set[str] = set()
        """Apps known to have no spec file of an older agent."""
        self._next_try: dict[str, float] = {}
        """Per app: when (wall clock) its current back-off ends, for the report."""
        self.passes = 0
        self._pass_done = threading.Condition()

    # -- what the agent reads -----------------------------------------------------------

    def wake_in(self) -> float | None:
        """Seconds until the next back-off of a desired app ends (None: none is waiting)."""
        now = self.clock.monotonic()
        waits = [
            table.waiting(uuid, now)
            for table, uuids in (
                (self.backoff, self.backoff.restart_at),
                (self.retry, self.retry.retry_at),
            )
            for uuid in uuids
            if uuid in self._desired
        ]
        return min(waits) if waits else None

    def wait_for_pass(self, after: int, timeout_s: float) -> bool:
        """Block until more than ``after`` passes have finished; False on timeout."""
        with self._pass_done:
            return self._pass_done.wait_for(lambda: self.passes > after, timeout_s)

    def statuses(self) -> list[AppStatus]:
        out = []
        for app in self._desired.values():
            stops = self.ledger.get(app.uuid, self._digest.get(app.uuid, ""))
            backoff, retry_at = self._waits(app)
            health = (
                self.health.health(app.uuid, self._digest.get(app.uuid, ""))
                if app.health is not None
                else None
            )
            out.append(
                self.records.status(app, stops, backoff_s=backoff, retry_at=retry_at, health=health)
            )
        return out

    def _waits(self, app: AppSpec) -> tuple[float | None, float | None]:
        """(current back-off, when the next try is due) of a crash loop or a retried failure."""
        state = self.records.state(app.uuid)
        if state is AppState.CRASHLOOP and app.uuid in self.backoff.delay_s:
            return self.backoff.delay_s[app.uuid], self._next_try.get(app.uuid)
        if state is AppState.ERROR and app.uuid in self.retry.delay_s:
            return self.retry.delay_s[app.uuid], self._next_try.get(app.uuid)
        return None, None

    # -- a pass ---------------------------------------------------------------------------

    def reconcile(self, desired: DesiredState | None) -> list[AppStatus]:
        apps = {a.uuid: a for a in (desired.apps if desired else [])}
        self.desired, self._desired = desired, apps
        for uuid in self.records.uuids() | set(self._digest) | set(self.backoff.crashes):
            if uuid not in apps:
                self._forget(uuid)
        self.store.gate.set_policy(desired.settings.downloads if desired else None)
        self._net_error = ""
        if self.network is not None:
            try:
                self.network.apply(desired)
            except NetworkError as exc:
                self._net_error = f"network config not applied: {exc}"
        self.counters.keep_only(apps)
        self.ledger.keep_only(apps)
        self.health.keep_only(apps)
        observed = {kind: rt.list() for kind, rt in self.runtimes.items()}
        for app in apps.values():
            try:
                self._reconcile_app(app, observed[app.kind].get(app.uuid))
            except DownloadDeferred as exc:
                self.records.set(app, AppState.DOWNLOADING, waiting=str(exc))
            except PASS_ERRORS as exc:
                self._failure(app, exc)
            self._check_start_window(app)
        self._remove_strays(apps, observed)
        prefetch = Prefetcher.refs(desired.prefetch) if desired else {}
        self.store.set_refs({**prefetch, **{a.uuid: a.image.sha256 for a in apps.values()}})
        self.store.gc()
        self.health.watch(self._probe_targets())
        statuses = self.statuses()
        with self._pass_done:
            self.passes += 1
            self._pass_done.notify_all()
        return statuses

    def _probe_targets(self) -> dict[str, ProbeTarget]:
        """The running apps with a probe, where to probe them."""
        targets = {}
        for app in self._desired.values():
            if app.health is None or self.records.state(app.uuid) is not AppState.RUNNING:
                continue
            address = None
            attachments = self._nets.get(app.uuid, WorkloadNetworks()).attachments
            wanted = app.health.network or (app.networks[0].name if app.networks else None)
            for a in attachments:
                if a.network == wanted:
                    address = a.ip
            targets[app.uuid] = ProbeTarget(
                app.uuid, app.name, self._digest.get(app.uuid, ""), app.health, address
            )
        return targets

    def _forget(self, uuid: str) -> None:
        self.records.forget(uuid)
        self.backoff.forget(uuid)
        self.retry.forget(uuid)
        for table in (
            self._digest,
            self._failed,
            self._boot_since,
            self._next_try,
            self._nets,
            self._liveness,
        ):
            table.pop(uuid, None)

    def _remove_strays(
        self, apps: Mapping[str, AppSpec], observed: Mapping[str, Mapping[str, Workload]]
    ) -> None:
        for kind, workloads in observed.items():
            for uuid in workloads:
                if uuid in apps and apps[uuid].kind == kind:
                    continue
                log.info("removing %s workload %s: no longer in the config", kind, uuid[:8])
                try:
                    self.runtimes[kind].remove(uuid)
                except RuntimeError_ as exc:
                    log.error("could not remove %s workload %s: %s", kind, uuid, exc)
                    continue
                if uuid not in apps and (gone := volumes.remove_all(self.apps_dir / uuid)):
                    log.info("deleted the disks of app %s: %s", uuid[:8], ", ".join(gone))

    def _failure(self, app: AppSpec, exc: Exception) -> None:
        """ERROR with the reason; a permanent failure waits for a new spec, others retry."""
        if is_permanent(exc):
            self._failed[app.uuid] = (_as_failed(app), str(exc))
            self.records.set(app, AppState.ERROR, f"{exc} (not retried until the app changes)")
            return
        delay = self.retry.failed(app.uuid, self.clock.monotonic())
        self._next_try[app.uuid] = self.clock.time() + delay
        self.records.set(app, AppState.ERROR, f"{exc} (retrying in {delay:.0f} s)")

    def _check_start_window(self, app: AppSpec) -> None:
        since = self._boot_since.get(app.uuid)
        state = self.records.state(app.uuid)
        if since is None or state in (AppState.RUNNING, AppState.CRASHLOOP, AppState.ERROR):
            return
        waited = self.clock.monotonic() - since
        if waited >= self.start_window_s:
            why = self.records.detail(app.uuid) or f"still {state.value if state else 'unknown'}"
            self.records.set(
                app,
                AppState.ERROR,
                f"did not reach RUNNING within {self.start_window_s:.0f} s of its start: {why}",
            )

    def _networks(self, app: AppSpec) -> WorkloadNetworks | None:
        """The app's interfaces; None (and the app in ERROR) when they are not in force."""
        if not app.networks:
            return WorkloadNetworks()
        if self.network is None:
            self.records.set(app, AppState.ERROR, "app networks are not managed on this node")
            return None
        nets = self.network.workload_networks(app.uuid)
        if sorted(a.network for a in nets.attachments) != sorted(n.name for n in app.networks):
            reason = self._net_error or "its networks are not set up"
            self.records.set(app, AppState.ERROR, reason)
            return None
        return nets

    def _commands(self, app: AppSpec, workload: Workload | None) -> Workload | None:
        """Act on raised restart/purge counters; returns the workload as it now is."""
        restart, purge = self.counters.due(app)
        runtime = self.runtimes[app.kind]
        if purge:
            self.records.set(app, AppState.PURGING)
            runtime.remove(app.uuid)
            volumes.wipe_app_state(self.apps_dir / app.uuid)
            self.counters.acted(app, restart=True, purge=True)
            self.backoff.forget(app.uuid)
            self.retry.forget(app.uuid)
            return None
        if restart:
            if app.desired == "running":
                self.records.set(app, AppState.RESTARTING)
                runtime.stop(app.uuid)
            self.counters.acted(app, restart=True)
            self.backoff.forget(app.uuid)
            self.retry.forget(app.uuid)
            if workload is None:
                return None
            return dataclasses.replace(workload, state=WorkloadState.STOPPED, detail="")
        return workload

    def _reconcile_app(self, app: AppSpec, workload: Workload | None) -> None:
        failed = self._failed.get(app.uuid)
        if failed is not None:
            if failed[0] == _as_failed(app):
                return  # a permanent failure: the record keeps its reason
            del self._failed[app.uuid]
            self.retry.forget(app.uuid)
        runtime = self.runtimes[app.kind]
        workload = self._commands(app, workload)
        running = workload is not None and workload.state is WorkloadState.RUNNING
        if app.desired == "stopped":
            if running:
                self.records.set(app, AppState.HALTING)
                runtime.stop(app.uuid)
            self.records.set(app, AppState.HALTED)
            self._boot_since.pop(app.uuid, None)
            self.retry.forget(app.uuid)
            self.backoff.forget(app.uuid)
            return
        nets = self._networks(app)
        if nets is None:
            return
        self._nets[app.uuid] = nets
        digest = self._digest[app.uuid] = spec_digest(app, nets)
        now = self.clock.monotonic()
        if (
            not running
            and not self.backoff.watching(app.uuid)
            and now - self._since < app.start_delay_s
        ):
            self.records.set(app, AppState.INITIAL)  # its start delay has not passed yet
            return
        if workload is not None and not self._made_from(app, workload, digest, nets):
            if self._image(app) is None:
                return  # the old version runs on while the new image comes
            log.info("app %s (%s): spec changed, recreating", app.name, app.uuid[:8])
            self.records.set(app, AppState.RESTARTING)
            runtime.remove(app.uuid)
            self.backoff.forget(app.uuid)
            workload = None
        if workload is not None and workload.state is WorkloadState.RUNNING:
            reason = self.health.restart_due(app.uuid) if app.health is not None else None
            if reason is None:
                self._seen_running(app, now)
                return
            workload = self._restart_unhealthy(app, workload, reason)
        if workload is not None and workload.state is WorkloadState.STARTING:
            self.records.set(app, AppState.BOOTING, detail=workload.detail)
            self._boot_since.setdefault(app.uuid, now)
            return
        if workload is not None and self._stopped(app, workload, digest, now):
            return
        if self.retry.waiting(app.uuid, now) > 0:
            return  # a temporary failure: ERROR (with the reason) until its back-off ends
        self._start(app, nets, digest, now)

    def _image(self, app: AppSpec) -> Path | None:
        """The app's verified image, fetched now (raises DownloadDeferred while the window
        is shut); None while the pre-fetcher is downloading it (the pass does not wait)."""
        sha = app.image.sha256
        if not self.store.has(sha) and self.store.busy(sha):
            done = self.store.partial_bytes(sha)
            progress = ImageProgress(done, app.image.size, None)
            self.records.set(
                app, AppState.DOWNLOADING, progress=progress, waiting="pre-fetch in progress"
            )
            return None
        return self.store.ensure(
            app.image, self.records.progress_callback(app, self.on_progress), app=app.uuid
        )

    def _restart_unhealthy(self, app: AppSpec, workload: Workload, reason: str) -> Workload:
        """Liveness: stop the app that turned unhealthy; it is started again like one that
        stopped on its own (counted, with its back-off)."""
        log.warning("app %s (%s): unhealthy (%s): restarting", app.name, app.uuid[:8], reason)
        self.health.liveness_restart(app.uuid)
        self._liveness[app.uuid] = f"unhealthy: {reason}"[:256]
        self.runtimes[app.kind].stop(app.uuid)
        return dataclasses.replace(workload, state=WorkloadState.STOPPED, detail="unhealthy")

    def _made_from(
        self, app: AppSpec, workload: Workload, digest: str, nets: WorkloadNetworks
    ) -> bool:
        """Is ``workload`` made from the app's current spec (``digest``)?

        A workload of an agent from before digests were stored with workloads has none; it
        counts as current while the spec file that agent kept still matches, so upgrading
        the agent restarts no app (it gets its digest at its next start).
        """
        if workload.spec_digest or app.uuid in self._not_legacy:
            return same_spec(workload.spec_digest, digest) or same_spec(
                workload.spec_digest, url_spec_digest(app, nets)
            )
        legacy = self.apps_dir / app.uuid / LEGACY_SPEC_FILE
        try:
            return legacy.read_text() == legacy_spec_digest(app)
        except OSError:
            self._not_legacy.add(app.uuid)
            return False

    def _seen_running(self, app: AppSpec, now: float) -> None:
        self.backoff.running(app.uuid, now)
        self.retry.forget(app.uuid)
        self._boot_since.pop(app.uuid, None)
        if self.backoff.looping(app.uuid):  # up again, but only for now: still the loop
            self.records.set(app, AppState.CRASHLOOP, self.records.error(app.uuid))
        else:
            self.records.set(app, AppState.RUNNING)

    def _stopped(self, app: AppSpec, workload: Workload, digest: str, now: float) -> bool:
        """A stopped workload: count a stop on its own; True while its restart back-off runs."""
        if self.backoff.watching(app.uuid):
            how = self._liveness.pop(app.uuid, "") or workload.detail or "stopped"
            delay = self.backoff.stopped(app.uuid, now)
            self._next_try[app.uuid] = self.clock.time() + delay
            n = self.backoff.crashes[app.uuid]
            stops = self.ledger.stopped(app.uuid, digest, workload.exit_code, how)
            log.warning(
                "app %s (%s): stopped on its own (%s); restart %d (in a row: %d) in %.0f s",
                app.name,
                app.uuid[:8],
                how,
                stops.restarts,
                n,
                delay,
            )
            if self.backoff.looping(app.uuid):
                why = f"stopped on its own {n} times in a row, last: {how}"
                self.records.set(app, AppState.CRASHLOOP, why)
            else:
                self.records.set(app, AppState.RESTARTING, detail=how)
        if self.backoff.waiting(app.uuid, now) > 0:
            if (
                self.backoff.looping(app.uuid)
                and self.records.state(app.uuid) is not AppState.CRASHLOOP
            ):
                self.records.set(app, AppState.CRASHLOOP, self.records.error(app.uuid))
            return True
        return False

    def _start(self, app: AppSpec, nets: WorkloadNetworks, digest: str, now: float) -> None:
        runtime = self.runtimes[app.kind]
        looping = self.backoff.looping(app.uuid)
        why = self.records.error(app.uuid) if looping else ""  # a crash loop keeps its reason
        path = self._image(app)
        if path is None:
            return
        self.records.set(app, AppState.LOADING)
        spec = build_workload_spec(
            app,
            WorkloadPlace(self.node_uuid, self._work_dir(app), path),
            nets,
            digest,
            self.volumes,
            self.sysfs_root,
        )
        self.records.set(app, AppState.CRASHLOOP if looping else AppState.BOOTING, why)
        self._boot_since.setdefault(app.uuid, now)
        if app.health is not None:
            self.health.started(app.uuid, digest, app.health)
        started = runtime.start(spec)
        self.backoff.started(app.uuid, now)
        if started.state is WorkloadState.RUNNING:
            self._seen_running(app, now)

    def _work_dir(self, app: AppSpec) -> Path:
        d = self.apps_dir / app.uuid
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
        return d


def _as_failed(app: AppSpec) -> str:
    """The app as a permanent failure remembers it: any change (spec or counters) retries."""
    return app.model_dump_json()
