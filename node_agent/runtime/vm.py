"""The VM runtime: each app is one persistent libvirt domain, owned through its metadata.

:class:`LibvirtRuntime` implements :class:`~node_agent.runtime.base.Runtime` on a libvirt
connection (``qemu:///system`` on a node, ``test:///default`` in unit tests).  A domain
belongs to this runtime when its ``<metadata>`` holds an Outpost element
(:class:`~node_agent.runtime.domain_xml.OutpostMetadata`) with this node's UUID, so several
agents can share one host daemon and an agent finds its domains again after a restart.

What a domain looks like is decided in :mod:`node_agent.runtime.vm_policy`; this module
only drives libvirt: define/start/shutdown/destroy/undefine, state mapping, error
classification (:class:`TemporaryError` vs :class:`PermanentError`, with the app UUID and
libvirt's message) and per-app logging.  :meth:`LibvirtRuntime.watch` subscribes to the
domains' lifecycle events (:mod:`node_agent.runtime.vm_events`) so a VM whose QEMU dies is
noticed at once; ``list()`` reports each domain's console log and the bytes its writable
disks take (``extra["disk_allocated_bytes"]``).

File access: under ``qemu:///system`` QEMU runs as an unprivileged user (Debian:
``libvirt-qemu``); libvirt chowns the kernel and initrd for it but cannot make their
directories searchable, so ``start`` refuses (PermanentError) a work dir (or disk image,
or an overlay's backing file) whose ancestors that user cannot traverse, e.g. anything
under ``/root`` or pytest's ``/tmp/pytest-of-root``.
The console log is written by virtlogd as root, so it has no such constraint.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import pwd
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import libvirt

from node_agent.runtime.base import (
    PermanentError,
    TemporaryError,
    Workload,
    WorkloadSpec,
    WorkloadState,
    same_spec,
)
from node_agent.runtime.domain_xml import OUTPOST_NS, Disk, Domain, OsKernelBoot, OutpostMetadata
from node_agent.runtime.vm_events import DomainEvent, LifecycleWatcher
from node_agent.runtime.vm_policy import (
    BUNDLE_DIR,
    domain_name,
    prepare_domain,
    remove_kernel_bundle,
)

__all__ = ["LibvirtRuntime", "qemu_user_for_uri"]

_LOG = logging.getLogger(__name__)

_PERMANENT_CODES = frozenset(
    {
        libvirt.VIR_ERR_XML_ERROR,
        libvirt.VIR_ERR_XML_DETAIL,
        libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
        libvirt.VIR_ERR_INVALID_ARG,
        libvirt.VIR_ERR_NO_SUPPORT,
        libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
    }
)
_GONE_CODES = frozenset({libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_DOMAIN_METADATA})

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}
_SHUTOFF_REASONS = {
    libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "failed to start",
    libvirt.VIR_DOMAIN_SHUTOFF_DAEMON: "daemon",
}
# A shutting-down domain still has its QEMU process: it counts as running until it is off.
_RUNNING_STATES = frozenset(
    {libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_SHUTDOWN}
)
_UNDEFINE_FLAGS = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | (
    libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
)
_QEMU_CONF = Path("/etc/libvirt/qemu.conf")
_DEFAULT_QEMU_USER = "libvirt-qemu"  # Debian's build default


def _workload_state(state: int, reason: int) -> WorkloadState:
    """RUNNING while QEMU runs; STARTING while it is paused starting up; else STOPPED."""
    if state in _RUNNING_STATES:
        return WorkloadState.RUNNING
    if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_STARTING_UP:
        return WorkloadState.STARTING
    return WorkloadState.STOPPED


def _qemu_files(domain: Domain) -> list[Path]:
    """Every file QEMU opens for ``domain``: kernel, initrd, disks and their backing files."""
    paths = []
    if isinstance(domain.os, OsKernelBoot):
        paths += [domain.os.kernel, domain.os.initrd]
    for disk in domain.devices.disks:
        paths.append(disk.source)
        if disk.backing is not None:
            paths.append(disk.backing.source)
    return [Path(p) for p in paths if p]


def _allocated_bytes(disks: Iterable[Disk]) -> int:
    """Bytes the writable disk files take on the host (their allocated blocks)."""
    total = 0
    for disk in disks:
        if disk.readonly or not disk.source:
            continue
        with contextlib.suppress(OSError):
            total += os.stat(disk.source).st_blocks * 512
    return total


def _libvirt_error_to_log(_ctx: object, error: tuple[Any, ...]) -> None:
    _LOG.debug("libvirt: %s", error[2] if len(error) > 2 else error)


class _AppLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes messages with the app UUID and adds it as ``extra["app_uuid"]``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        app_uuid = self.extra["app_uuid"] if self.extra else "?"
        kwargs.setdefault("extra", {})["app_uuid"] = app_uuid
        return f"app {app_uuid}: {msg}", kwargs


def qemu_user_for_uri(uri: str, qemu_conf: Path = _QEMU_CONF) -> str | None:
    """The local user QEMU runs as for ``uri``, or None when no path check applies.

    Only a local ``qemu:///system`` daemon runs QEMU as another user: the ``user`` of
    qemu.conf, else Debian's default ``libvirt-qemu`` (when that user exists).
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("qemu", "qemu+unix") or parts.netloc or parts.path != "/system":
        return None
    with contextlib.suppress(OSError):
        for line in qemu_conf.read_text().splitlines():
            if match := re.match(r'\s*user\s*=\s*"([^"]+)"', line):
                return match.group(1).lstrip("+")
    try:
        pwd.getpwnam(_DEFAULT_QEMU_USER)
    except KeyError:
        return None
    return _DEFAULT_QEMU_USER


class LibvirtRuntime:
    """Apps as libvirt domains; see the module docstring.

    ``uri``: libvirt connection URI.  ``node_uuid``: this node; only domains labelled with
    it are listed or touched.  ``accel``: ``kvm`` or ``tcg`` (from
    :func:`~node_agent.runtime.hypervisor_probe.probe_accel`).  ``remove_timeout_s``:
    graceful-shutdown time ``remove`` allows before destroying.  ``shutdown_retry_s``: how
    often ``stop`` presses the ACPI power button again.  ``qemu_user``: the user
    whose access to kernel paths is checked; ``"auto"`` derives it from the URI
    (:func:`qemu_user_for_uri`), None disables the check.
    """

    kind = "vm"

    def __init__(
        self,
        uri: str,
        node_uuid: str,
        accel: str,
        *,
        remove_timeout_s: float = 10.0,
        qemu_user: str | None = "auto",
        poll_interval_s: float = 0.2,
        shutdown_retry_s: float = 5.0,
    ) -> None:
        if accel not in ("kvm", "tcg"):
            raise ValueError(f"accel must be 'kvm' or 'tcg', not {accel!r}")
        if not node_uuid:
            raise ValueError("node_uuid is required")
        self.uri = uri
        self.node_uuid = node_uuid
        self.accel = accel
        self.remove_timeout_s = remove_timeout_s
        self.poll_interval_s = poll_interval_s
        self.shutdown_retry_s = shutdown_retry_s
        self.qemu_user = qemu_user_for_uri(uri) if qemu_user == "auto" else qemu_user
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()
        self._watcher: LifecycleWatcher | None = None
        libvirt.registerErrorHandler(_libvirt_error_to_log, None)  # no stderr noise

    # -- connection and errors ---------------------------------------------------------

    def _connect(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    if self._conn.isAlive():
                        return self._conn
                _LOG.warning("libvirt connection to %s lost; reconnecting", self.uri)
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise TemporaryError(f"cannot connect to libvirt at {self.uri}: {exc}") from exc
            return self._conn

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` on every lifecycle event of this node's domains, from libvirt's
        event loop thread (:mod:`vm_events`), so a crashed VM is handled at once."""

        def on_event(_event: DomainEvent) -> None:
            wake()

        if self._watcher is None:
            self._watcher = LifecycleWatcher(self.uri, domain_name(self.node_uuid, ""), on_event)
        self._watcher.ensure()

    @property
    def events(self) -> builtins.list[DomainEvent]:
        """The latest lifecycle events seen by :meth:`watch` (oldest first)."""
        return list(self._watcher.history) if self._watcher is not None else []

    def close(self) -> None:
        """Close the libvirt connections (reopened on next use)."""
        if self._watcher is not None:
            self._watcher.close()
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    self._conn.close()
                self._conn = None

    @staticmethod
    @contextlib.contextmanager
    def _errors(app_uuid: str, action: str) -> Iterator[None]:
        """Turn a libvirtError into TemporaryError/PermanentError naming the app."""
        try:
            yield
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            kind = PermanentError if code in _PERMANENT_CODES else TemporaryError
            message = exc.get_error_message() or str(exc)
            raise kind(f"app {app_uuid}: {action} failed: {message}") from exc

    def _log(self, app_uuid: str) -> _AppLog:
        return _AppLog(_LOG, {"app_uuid": app_uuid, "node_uuid": self.node_uuid})

    # -- lookup ---------------------------------------------------------------------------

    @staticmethod
    def _metadata(dom: libvirt.virDomain) -> OutpostMetadata | None:
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, OUTPOST_NS, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _GONE_CODES:
                return None
            raise
        try:
            return OutpostMetadata.from_metadata_api(text)
        except ValueError:
            return None

    def _lookup(self, app_uuid: str) -> tuple[libvirt.virDomain, OutpostMetadata] | None:
        """This app's domain and its metadata, or None; PermanentError if the name is taken."""
        conn = self._connect()
        name = domain_name(self.node_uuid, app_uuid)
        with self._errors(app_uuid, f"looking up domain {name}"):
            try:
                dom = conn.lookupByName(name)
                meta = self._metadata(dom)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise
        if meta is None or meta.node_uuid != self.node_uuid or meta.app_uuid != app_uuid:
            owner = f"app {meta.app_uuid} of node {meta.node_uuid}" if meta else "not Outpost"
            raise PermanentError(f"app {app_uuid}: domain name {name} is taken ({owner})")
        return dom, meta

    def _workload(self, dom: libvirt.virDomain, meta: OutpostMetadata) -> Workload:
        state, reason = dom.state()
        detail = _STATE_NAMES.get(state, f"state {state}")
        if state == libvirt.VIR_DOMAIN_SHUTOFF and reason in _SHUTOFF_REASONS:
            detail += f" ({_SHUTOFF_REASONS[reason]})"
        extra = {"domain_uuid": dom.UUIDString(), "accel": self.accel}
        with contextlib.suppress(libvirt.libvirtError, ValueError):
            devices = Domain.from_xml(dom.XMLDesc(0)).devices
            if devices.serials and (
                log := devices.serials[0].source_path or devices.serials[0].log_file
            ):
                extra["console_log"] = log
            extra["disk_allocated_bytes"] = str(_allocated_bytes(devices.disks))
        return Workload(
            app_uuid=meta.app_uuid,
            state=_workload_state(state, reason),
            runtime_id=dom.name(),
            image_sha256=meta.image_sha256,
            detail=detail,
            extra=extra,
            spec_digest=meta.spec_sha256,
        )

    # -- Runtime protocol -------------------------------------------------------------------

    def list(self) -> dict[str, Workload]:
        """This node's domains, keyed by app UUID, found by their Outpost metadata."""
        conn = self._connect()
        if self._watcher is not None:
            self._watcher.ensure()
        found: dict[str, Workload] = {}
        with self._errors("*", "listing domains"):
            domains = conn.listAllDomains(0)
        for dom in domains:
            try:
                meta = self._metadata(dom)
                if meta is not None and meta.node_uuid == self.node_uuid:
                    found[meta.app_uuid] = self._workload(dom, meta)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in _GONE_CODES:  # else undefined meanwhile
                    with self._errors("*", f"reading domain {dom.name()}"):
                        raise
        return found

    def start(self, spec: WorkloadSpec) -> Workload:
        """Define (persistent) and start the app's domain; a no-op when already running.

        A running domain made from another spec (:func:`~node_agent.runtime.base.same_spec`
        on its metadata's spec digest) is destroyed, redefined and restarted; a stopped one
        is always redefined from the current spec before starting.
        """
        if spec.node_uuid != self.node_uuid:
            raise PermanentError(
                f"app {spec.app_uuid}: spec is for node {spec.node_uuid}, not {self.node_uuid}"
            )
        log = self._log(spec.app_uuid)
        uuid = ""
        found = self._lookup(spec.app_uuid)
        if found is not None:
            dom, meta = found
            with self._errors(spec.app_uuid, "checking domain state"):
                uuid = dom.UUIDString()
                state, _ = dom.state()
                if dom.isActive() and same_spec(meta.spec_sha256, spec.digest):
                    if state == libvirt.VIR_DOMAIN_PAUSED:
                        log.info("resuming paused domain %s", dom.name())
                        dom.resume()
                    else:
                        log.debug("domain %s already running", dom.name())
                    return self._workload(dom, meta)
                if dom.isActive():
                    log.info(
                        "spec changed (%s -> %s): destroying %s to redefine it",
                        meta.spec_sha256[:12] or "unrecorded",
                        spec.digest[:12],
                        dom.name(),
                    )
                    self._destroy(dom)
        self._prepare_work_dir(spec.work_dir)
        domain = prepare_domain(spec, self.accel, uuid=uuid)
        self._check_qemu_access(spec.app_uuid, _qemu_files(domain))
        conn = self._connect()
        with self._errors(spec.app_uuid, f"defining domain {domain.name}"):
            dom = conn.defineXMLFlags(domain.to_xml(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        log.info("defined domain %s (%s, image %s)", domain.name, domain.type, spec.image_sha256)
        with self._errors(spec.app_uuid, f"starting domain {domain.name}"):
            try:
                dom.create()
            except libvirt.libvirtError:
                if not dom.isActive():  # else started concurrently: fine
                    raise
        log.info("started domain %s", domain.name)
        assert domain.metadata is not None
        with self._errors(spec.app_uuid, "reading domain state"):
            return self._workload(dom, domain.metadata)

    def stop(self, app_uuid: str, timeout_s: float = 10.0) -> None:
        """ACPI shutdown, then destroy after ``timeout_s``; no error if stopped or missing."""
        found = self._lookup(app_uuid)
        if found is None:
            return
        dom, _ = found
        log = self._log(app_uuid)
        with self._errors(app_uuid, f"stopping domain {dom.name()}"):
            try:
                if not dom.isActive():
                    return
                if timeout_s > 0:
                    log.info("shutting down domain %s (grace %gs)", dom.name(), timeout_s)
                    if self._shutdown_within(dom, timeout_s):
                        log.info("domain %s shut down", dom.name())
                        return
                    log.warning("domain %s still running after %gs", dom.name(), timeout_s)
                self._destroy(dom)
                log.info("destroyed domain %s", dom.name())
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return
                raise

    def remove(self, app_uuid: str) -> None:
        """Stop, undefine, and delete the unpacked kernel files (the console log stays)."""
        found = self._lookup(app_uuid)
        if found is None:
            return
        dom, _ = found
        name = dom.name()
        with self._errors(app_uuid, f"reading domain {name}"):
            boot = Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).os
        kernel = boot.kernel if isinstance(boot, OsKernelBoot) else ""
        self.stop(app_uuid, self.remove_timeout_s)
        with self._errors(app_uuid, f"undefining domain {name}"):
            try:
                dom.undefineFlags(_UNDEFINE_FLAGS)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
        self._log(app_uuid).info("undefined domain %s", name)
        bundle = Path(kernel).parent if kernel else None
        if bundle is not None and bundle.name == BUNDLE_DIR:
            try:
                remove_kernel_bundle(bundle)
            except OSError as exc:
                raise TemporaryError(f"app {app_uuid}: removing {bundle}: {exc}") from exc

    # -- helpers ----------------------------------------------------------------------------

    def _shutdown_within(self, dom: libvirt.virDomain, timeout_s: float) -> bool:
        """Press the ACPI power button, again every ``shutdown_retry_s`` (a press before the
        guest's ACPI handling is up is lost); True once the domain is off."""
        deadline = time.monotonic() + timeout_s
        next_press = 0.0
        while (now := time.monotonic()) < deadline:
            if now >= next_press:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.shutdown()
                next_press = now + self.shutdown_retry_s
            if not dom.isActive():
                return True
            time.sleep(self.poll_interval_s)
        return not dom.isActive()

    @staticmethod
    def _destroy(dom: libvirt.virDomain) -> None:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            if dom.isActive():
                raise

    def _prepare_work_dir(self, work_dir: Path) -> None:
        """Create the work dir; make it searchable (not readable) for QEMU's user."""
        try:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
            mode = stat.S_IMODE(os.stat(work_dir).st_mode)
            if self.qemu_user and mode & 0o011 != 0o011:
                os.chmod(work_dir, mode | 0o011)
        except OSError as exc:
            raise TemporaryError(f"preparing work dir {work_dir}: {exc}") from exc

    def _check_qemu_access(self, app_uuid: str, paths: builtins.list[Path]) -> None:
        """PermanentError unless QEMU's user can search every directory above ``paths``."""
        if not self.qemu_user:
            return
        try:
            user = pwd.getpwnam(self.qemu_user)
        except KeyError:
            return
        groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
        for path in paths:
            if str(path) in ("", "."):
                continue
            for directory in reversed(Path(path).parents):
                info = os.stat(directory)
                if info.st_uid == user.pw_uid:
                    ok = info.st_mode & stat.S_IXUSR
                elif info.st_gid in groups:
                    ok = info.st_mode & stat.S_IXGRP
                else:
                    ok = info.st_mode & stat.S_IXOTH
                if not ok:
                    raise PermanentError(
                        f"app {app_uuid}: QEMU runs as {self.qemu_user} and cannot reach "
                        f"{path}: {directory} (mode {stat.S_IMODE(info.st_mode):04o}, "
                        f"uid {info.st_uid}, gid {info.st_gid}) is not searchable by it; use "
                        "a work dir under a world-searchable path such as /var/lib/outpost"
                    )
