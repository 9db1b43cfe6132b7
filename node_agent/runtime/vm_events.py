"""libvirt domain lifecycle events, so a VM that stops on its own is noticed at once.

libvirt delivers events only to connections opened after an event loop implementation was
registered (``virEventRegisterDefaultImpl``) and only while something runs that loop
(``virEventRunDefaultImpl``).  :func:`ensure_event_loop` does both once per process (a
daemon thread); :class:`LifecycleWatcher` keeps its own connection with a keep-alive,
registers ``VIR_DOMAIN_EVENT_ID_LIFECYCLE`` and calls ``on_event`` for the domains whose
names carry this node's prefix (``outpost-<node[:8]>-``).

The callback only records the event and wakes its listener (the agent's main loop): what
to do about it is decided by the level-triggered reconciler from the domains' states, so a
lost event costs one reconcile interval, never correctness.  A connection that dies
(libvirtd restarted) is reopened by :meth:`LifecycleWatcher.ensure`, which the runtime
calls on every ``list()``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

__all__ = ["DomainEvent", "LifecycleWatcher", "ensure_event_loop", "event_name"]

_LOG = logging.getLogger(__name__)
_LOOP_LOCK = threading.Lock()
_LOOP_STARTED = False

_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}
_STOPPED_DETAILS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: "migrated",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "saved",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: "from snapshot",
}


def event_name(event: int, detail: int) -> str:
    """``stopped/failed``, ``started/0``, …: readable enough for logs and tests."""
    name = _EVENTS.get(event, f"event {event}")
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
        return f"{name}/{_STOPPED_DETAILS.get(detail, detail)}"
    return f"{name}/{detail}"


@dataclass(frozen=True)
class DomainEvent:
    """One lifecycle event of one of this node's domains."""

    domain: str
    event: int
    detail: int
    at: float  # time.monotonic()

    @property
    def name(self) -> str:
        return event_name(self.event, self.detail)

    @property
    def stopped(self) -> bool:
        """The domain's QEMU is gone (stopped for any reason, or crashed)."""
        return self.event in (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_CRASHED)


def _run_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError as exc:  # keep the loop alive whatever a callback did
            _LOG.warning("libvirt event loop: %s", exc)
            time.sleep(0.1)


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread (once)."""
    global _LOOP_STARTED
    with _LOOP_LOCK:
        if _LOOP_STARTED:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_loop, name="libvirt-events", daemon=True).start()
        _LOOP_STARTED = True


class LifecycleWatcher:
    """Lifecycle events of the domains named ``prefix…`` on ``uri`` (see the module doc).

    ``on_event`` runs in the event loop thread: it must be quick (set an Event).
    ``history`` keeps the last events (newest last) for logs and tests.
    """

    def __init__(
        self, uri: str, prefix: str, on_event: Callable[[DomainEvent], None], history: int = 64
    ) -> None:
        self.uri = uri
        self.prefix = prefix
        self.on_event = on_event
        self.history: collections.deque[DomainEvent] = collections.deque(maxlen=history)
        self._conn: libvirt.virConnect | None = None
        self._callback_id: int | None = None
        self._lock = threading.Lock()

    def _callback(
        self, _conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, _o: object
    ) -> None:
        try:
            name = dom.name()
        except libvirt.libvirtError:
            return
        if not name.startswith(self.prefix):
            return
        found = DomainEvent(name, event, detail, time.monotonic())
        self.history.append(found)
        log = _LOG.warning if found.stopped else _LOG.debug
        log("domain %s: %s", name, found.name)
        try:
            self.on_event(found)
        except Exception:  # a listener's bug must not kill the event loop
            _LOG.exception("lifecycle listener failed")

    def ensure(self) -> bool:
        """Open the event connection if it is not open and alive; True when it is."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    if self._conn.isAlive():
                        return True
                _LOG.warning("libvirt event connection to %s lost; reopening", self.uri)
                self._drop()
            ensure_event_loop()
            try:
                conn = libvirt.open(self.uri)
                with contextlib.suppress(libvirt.libvirtError):  # not on test:///default
                    conn.setKeepAlive(5, 3)
                self._callback_id = conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._callback, None
                )
            except libvirt.libvirtError as exc:
                _LOG.warning("cannot watch libvirt events at %s: %s", self.uri, exc)
                return False
            self._conn = conn
            return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(libvirt.libvirtError):
            if self._callback_id is not None:
                conn.domainEventDeregisterAny(self._callback_id)
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
        self._callback_id = None

    def close(self) -> None:
        with self._lock:
            self._drop()
