"""The level-triggered reconciler: make the runtimes match the desired state.

Each pass re-reads the desired state (the checkpoint) and the actual state (the
runtimes' labelled workloads and the image store) and acts on the difference:

    networks (firewall, bridges, dnsmasq)        → realised first, through the network hook
    desired running, missing/stopped/other image → fetch+verify image → start
    desired stopped, running                     → stop
    running, not desired                         → remove
    running, but its spec changed (env, command,  → remove, start from the new spec
      resources, adapters, networks)
    restart/purge counter raised                 → stop/remove (+ wipe its state), start again
    running before, now stopped (crash, guest    → start again after a back-off: at once the
      powered off) while desired running            first time, then 1 s, 2 s, … up to 60 s
                                                    until it has run 60 s in one go
    blobs no app needs                           → garbage-collect

VM apps booting a qcow2/raw image get a writable overlay on the verified blob and their
data disks from :mod:`node_agent.volumes` before each start; purge deletes them (all of the
app's writable state), so the next start makes them blank; an app that left the config
has them deleted.  Their gpu/pci adapters are checked again against sysfs
(:func:`node_agent.passthrough.resolve_adapters`) before each start: every function of
their IOMMU groups is passed through, or the app is in ERROR with the reason.

While an image downloads, its progress (percent) is kept in the app's status and
``on_progress`` (the agent: a rate-limited info report) is called.  A wake-up when a
back-off ends is the caller's job: :meth:`Reconciler.wake_in` says when.

Commands act once per counter increase (``app_counters``); an app with a start delay
is first started that long after the agent started.

Failures are recorded per app (state ERROR, error text and time) and retried on
the next pass; one app's failure never stops the others.

An app on app networks gets its interfaces from the network hook (``NodePorts`` or
``NodeNetwork``: ``apply(desired)`` then ``workload_networks(uuid)``). When the hook
refuses a config, apps whose networks are in force keep running on them; the others are
in ERROR with the reason. When an app's interfaces change while it runs, it is restarted
once (stop, then start from the new spec). That comparison lives in memory: after an
agent restart the first pass takes the running workloads' interfaces as current.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from attestation.files import atomic_write
from node_agent import volumes
from node_agent.app_counters import ActedCounters
from node_agent.image_store import ImageError, ImageStore
from node_agent.network import NetworkError, WorkloadNetworks
from node_agent.passthrough import resolve_adapters
from node_agent.runtime.base import Runtime, RuntimeError_, Workload, WorkloadSpec, WorkloadState
from protocol.desired_state import AppSpec, DesiredState
from protocol.messages import AppState, AppStatus

__all__ = ["CrashBackoff", "NetworkHook", "Reconciler"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Record:
    state: AppState
    error: str = ""
    error_time: float | None = None
    progress_pct: int | None = None


DISK_IMAGE_FORMATS = ("qcow2", "raw")


@dataclass
class CrashBackoff:
    """Restart delays for apps that stop on their own (EVE's restart with back-off).

    The n-th stop in a row waits ``0`` (n = 1), then ``base_s * 2**(n-2)`` up to ``max_s``;
    an app that ran ``stable_s`` in one go starts counting from zero again.
    """

    base_s: float = 1.0
    max_s: float = 60.0
    stable_s: float = 60.0
    crashes: dict[str, int] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    restart_at: dict[str, float] = field(default_factory=dict)

    def started(self, uuid: str, now: float) -> None:
        self.started_at[uuid] = now
        self.restart_at.pop(uuid, None)

    def stopped(self, uuid: str, now: float) -> float:
        """Count an unexpected stop; the delay before its restart."""
        if now - self.started_at.get(uuid, now) >= self.stable_s:
            self.crashes[uuid] = 0
        n = self.crashes.get(uuid, 0) + 1
        self.crashes[uuid] = n
        delay = 0.0 if n == 1 else min(self.base_s * 2 ** (n - 2), self.max_s)
        self.restart_at[uuid] = now + delay
        self.started_at.pop(uuid, None)
        return delay

    def waiting(self, uuid: str, now: float) -> float:
        """Seconds left before ``uuid`` may be restarted (0: now)."""
        return max(0.0, self.restart_at.get(uuid, now) - now)

    def forget(self, uuid: str) -> None:
        for table in (self.crashes, self.started_at, self.restart_at):
            table.pop(uuid, None)


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
        vols: volumes.Volumes | None = None,
    ) -> None:
        self.node_uuid = node_uuid
        self.store = store
        self.runtimes = runtimes
        self.apps_dir = apps_dir
        self.network = network
        self._records: dict[str, _Record] = {}
        self._desired: dict[str, AppSpec] = {}
        self._net_error = ""
        self._started_nets: dict[str, WorkloadNetworks] = {}
        self.counters = counters or ActedCounters(apps_dir.parent / "app-counters.json")
        self._since = time.monotonic()
        self.sysfs_root = sysfs_root
        self.on_progress = on_progress
        self.backoff = backoff or CrashBackoff()
        self._restarts: dict[str, tuple[str, int]] = {}
        """Per app: (spec digest, restarts after stopping on its own) for ``AppStatus``."""
        self.volumes = vols or volumes.Volumes()

    def _set(
        self, app: AppSpec, state: AppState, error: str = "", progress: int | None = None
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
        self._records[app.uuid] = _Record(state, error, time.time() if error else None, progress)

    def _progress(self, app: AppSpec) -> Callable[[str, int, int], None]:
        """The image store's progress callback for ``app``: state + percent, then notify."""

        def report(phase: str, done: int, total: int) -> None:
            pct = min(100, done * 100 // total) if total > 0 else None
            old = self._records.get(app.uuid)
            self._set(app, AppState(phase), progress=pct)
            if self.on_progress is not None and (
                old is None or (old.state, old.progress_pct) != (AppState(phase), pct)
            ):
                self.on_progress()

        return report

    def wake_in(self) -> float | None:
        """Seconds until a crashed app's back-off ends (None: nothing is waiting)."""
        now = time.monotonic()
        waits = [
            self.backoff.waiting(uuid, now)
            for uuid in self.backoff.restart_at
            if uuid in self._desired
        ]
        return min(waits) if waits else None

    def statuses(self) -> list[AppStatus]:
        out = []
        for app in self._desired.values():
            rec = self._records.get(app.uuid, _Record(AppState.INITIAL))
            out.append(
                AppStatus(
                    uuid=app.uuid,
                    name=app.name,
                    state=rec.state,
                    error=rec.error[:4000],
                    error_time=rec.error_time,
                    image_sha256=app.image.sha256,
                    progress_pct=rec.progress_pct,
                    restarts=self._restart_count(app),
                )
            )
        return out

    def _restart_count(self, app: AppSpec) -> int:
        digest, n = self._restarts.get(app.uuid, ("", 0))
        return n if digest == _spec_digest(app) else 0

    def reconcile(self, desired: DesiredState | None) -> list[AppStatus]:
        apps = {a.uuid: a for a in (desired.apps if desired else [])}
        self._desired = apps
        for uuid in list(self._records):
            if uuid not in apps:
                del self._records[uuid]
                self._started_nets.pop(uuid, None)
                self.backoff.forget(uuid)
        self._net_error = ""
        if self.network is not None:
            try:
                self.network.apply(desired)
            except NetworkError as exc:
                self._net_error = f"network config not applied: {exc}"
        self.counters.keep_only(apps)
        observed = {kind: rt.list() for kind, rt in self.runtimes.items()}
        for app in apps.values():
            try:
                self._reconcile_app(app, observed[app.kind].get(app.uuid))
            except (RuntimeError_, ImageError, OSError) as exc:
                self._set(app, AppState.ERROR, str(exc))
        for kind, workloads in observed.items():
            for uuid in workloads:
                if uuid not in apps or apps[uuid].kind != kind:
                    log.info("removing %s workload %s: no longer in the config", kind, uuid[:8])
                    try:
                        self.runtimes[kind].remove(uuid)
                    except RuntimeError_ as exc:
                        log.error("could not remove %s workload %s: %s", kind, uuid, exc)
                        continue
                    if uuid not in apps and (gone := volumes.remove_all(self.apps_dir / uuid)):
                        log.info("deleted the disks of app %s: %s", uuid[:8], ", ".join(gone))
        self.store.set_refs({a.uuid: a.image.sha256 for a in apps.values()})
        self.store.gc()
        return self.statuses()

    def _networks(self, app: AppSpec) -> WorkloadNetworks | None:
        """The app's interfaces; None (and the app in ERROR) when they are not in force."""
        if not app.networks:
            return WorkloadNetworks()
        if self.network is None:
            self._set(app, AppState.ERROR, "app networks are not managed on this node")
            return None
        nets = self.network.workload_networks(app.uuid)
        if sorted(a.network for a in nets.attachments) != sorted(n.name for n in app.networks):
            reason = self._net_error or "its networks are not set up"
            self._set(app, AppState.ERROR, reason)
            return None
        return nets

    def _commands(self, app: AppSpec, workload: Workload | None) -> Workload | None:
        """Act on raised restart/purge counters; returns the workload as it now is."""
        restart, purge = self.counters.due(app)
        runtime = self.runtimes[app.kind]
        if purge:
            self._set(app, AppState.PURGING)
            runtime.remove(app.uuid)
            self._wipe(app)
            self.counters.acted(app, restart=True, purge=True)
            self.backoff.forget(app.uuid)
            return None
        if restart:
            if app.desired == "running":
                self._set(app, AppState.RESTARTING)
                runtime.stop(app.uuid)
            self.counters.acted(app, restart=True)
            self.backoff.forget(app.uuid)
            return (
                None
                if workload is None
                else Workload(
                    workload.app_uuid,
                    WorkloadState.STOPPED,
                    workload.runtime_id,
                    workload.image_sha256,
                )
            )
        return workload

    def _wipe(self, app: AppSpec) -> None:
        """Delete the app's writable state (everything in its work dir but the console log):
        its root overlay and data disks too, so the next start makes them blank."""
        d = self.apps_dir / app.uuid
        if not d.is_dir():
            return
        for entry in d.iterdir():
            if entry.name == "console.log":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _reconcile_app(self, app: AppSpec, workload: Workload | None) -> None:
        runtime = self.runtimes[app.kind]
        workload = self._commands(app, workload)
        running = workload is not None and workload.state is WorkloadState.RUNNING
        same_image = workload is not None and workload.image_sha256 == app.image.sha256
        if app.desired == "stopped":
            if running:
                self._set(app, AppState.HALTING)
                runtime.stop(app.uuid)
            self._set(app, AppState.HALTED)
            return
        nets = self._networks(app)
        if nets is None:
            return
        waited = time.monotonic() - self._since
        if not running and app.uuid not in self._started_nets and waited < app.start_delay_s:
            self._set(app, AppState.INITIAL)  # its start delay has not passed yet
            return
        if running and same_image and self._spec_changed(app):
            log.info("app %s (%s): spec changed, recreating", app.name, app.uuid[:8])
            self._set(app, AppState.RESTARTING)
            runtime.remove(app.uuid)
            running = False
        if running and same_image:
            seen = self._started_nets.setdefault(app.uuid, nets)
            if seen == nets:
                self._set(app, AppState.RUNNING)
                return
            log.info("app %s (%s): interfaces changed, restarting", app.name, app.uuid[:8])
            self._set(app, AppState.RESTARTING)
            runtime.stop(app.uuid)
        if workload is not None and not running and self._crash_wait(app, workload):
            return
        path = self.store.ensure(app.image, self._progress(app), app=app.uuid)
        self._set(app, AppState.LOADING)
        spec = self._workload_spec(app, path, nets)
        self._set(app, AppState.BOOTING)
        started = runtime.start(spec)
        self.backoff.started(app.uuid, time.monotonic())
        self._started_nets[app.uuid] = nets
        atomic_write(self._work_dir(app) / SPEC_FILE, _spec_digest(app).encode())
        self._set(
            app, AppState.RUNNING if started.state is WorkloadState.RUNNING else AppState.BOOTING
        )

    def _crash_wait(self, app: AppSpec, workload: Workload) -> bool:
        """A workload that stopped on its own: True while its restart back-off runs."""
        now = time.monotonic()
        rec = self._records.get(app.uuid)
        if rec is not None and rec.state is AppState.RUNNING:
            delay = self.backoff.stopped(app.uuid, now)
            n = self.backoff.crashes[app.uuid]
            self._restarts[app.uuid] = (_spec_digest(app), self._restart_count(app) + 1)
            log.warning(
                "app %s (%s): stopped on its own (%s); restart %d in %.0f s",
                app.name,
                app.uuid[:8],
                workload.detail or "stopped",
                n,
                delay,
            )
            why = f"stopped on its own ({workload.detail or 'stopped'}); restart {n}"
            self._set(app, AppState.RESTARTING, why if delay else "")
        left = self.backoff.waiting(app.uuid, now)
        return left > 0

    def _workload_spec(self, app: AppSpec, path: Path, nets: WorkloadNetworks) -> WorkloadSpec:
        """What the runtime gets: the verified image, and for VMs their disks and devices."""
        work_dir = self._work_dir(app)
        root, data, pci = None, (), ()
        if app.kind == "vm":
            pci = resolve_adapters(app.adapters, self.sysfs_root)
            base = path if app.image.format in DISK_IMAGE_FORMATS else None
            root, data = self.volumes.prepare(
                app.uuid, work_dir, base, app.image.format, app.resources.disk_mib, app.disks
            )
        return WorkloadSpec(
            app_uuid=app.uuid,
            name=app.name,
            node_uuid=self.node_uuid,
            image_path=path,
            image_sha256=app.image.sha256,
            image_format=app.image.format,
            work_dir=work_dir,
            vcpus=app.resources.vcpus,
            memory_mib=app.resources.memory_mib,
            command=tuple(app.command),
            env=tuple(sorted(app.env.items())),
            networks=nets.attachments,
            netns_path=nets.netns_path,
            usb_devices=tuple(a.match for a in app.adapters if a.kind == "usb"),
            pci_devices=pci,
            root_disk=root,
            data_disks=data,
            vtpm=app.vtpm,
        )

    def _spec_changed(self, app: AppSpec) -> bool:
        """Has the spec changed since the workload was started (persisted across restarts)?"""
        try:
            started = (self.apps_dir / app.uuid / SPEC_FILE).read_text()
        except FileNotFoundError:
            return False  # started before specs were recorded: take it as current
        return started != _spec_digest(app)

    def _work_dir(self, app: AppSpec) -> Path:
        d = self.apps_dir / app.uuid
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
        return d


SPEC_FILE = "spec.sha256"
_NOT_SPEC = {"restart_counter", "purge_counter", "desired", "start_delay_s", "name"}


_NEW_DEFAULTS = {"disks": [], "vtpm": False}
"""Fields added later: left out of the digest at their defaults, so a workload started by
an older agent is not taken for changed."""


def _spec_digest(app: AppSpec) -> str:
    """What a running workload was made from (commands and life-cycle fields excluded)."""
    fields = app.model_dump(mode="json", exclude=_NOT_SPEC)
    for name, default in _NEW_DEFAULTS.items():
        if fields.get(name) == default:
            fields.pop(name)
    for adapter in fields.get("adapters", []):
        if adapter.get("optional") is False:
            adapter.pop("optional")
    body = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()
