"""Processes the lab starts: spawned detached (they outlive ``outpost-lab up``), identified
by pid *and* start time, stopped with SIGTERM then SIGKILL.

A pid alone is not enough to stop a process days later (pids are reused), so every
:class:`ProcRef` carries the start time from ``/proc/<pid>/stat``.  A zombie (dead, not yet
reaped by its new parent) counts as gone.  :mod:`lab.discover` finds the lab's processes
that were never recorded (started by hand, or by an ``up`` killed before it saved them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from lab.state import ProcRef

__all__ = ["alive", "proc_ref", "spawn", "stop_all"]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of ``pid``, or None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[19])


def proc_ref(pid: int, name: str) -> ProcRef:
    st = _stat(pid)
    return ProcRef(pid=pid, start_ticks=st[1] if st else 0, name=name)


def alive(ref: ProcRef) -> bool:
    """The very process ``ref`` names still runs (not a zombie, not a reused pid)."""
    st = _stat(ref.pid)
    return st is not None and st[0] != "Z" and st[1] == ref.start_ticks


def spawn(
    argv: Sequence[str | Path],
    name: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], ProcRef]:
    """Start ``argv`` in its own session, output appended to ``log_path``."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    return proc, proc_ref(proc.pid, name)


def _signal(ref: ProcRef, sig: int) -> None:
    if alive(ref):
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, sig)


def _reap(pid: int) -> None:
    """Reap ``pid`` if it is our child (when ``up`` itself tears down after a failure)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_all(refs: Iterable[ProcRef], timeout_s: float = 15.0) -> list[ProcRef]:
    """SIGTERM each live process, SIGKILL those still running after ``timeout_s``.

    Returns the ones that were still alive when asked to stop."""
    live = [r for r in refs if alive(r)]
    for ref in live:
        _signal(ref, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for ref in live:
            _reap(ref.pid)
        if not any(alive(r) for r in live):
            return live
        time.sleep(0.1)
    for ref in live:
        _signal(ref, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(alive(r) for r in live):
        for ref in live:
            _reap(ref.pid)
        time.sleep(0.05)
    return live
