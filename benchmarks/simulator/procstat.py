"""CPU time and resident memory of processes (and their children), read from /proc.

before = sample(pids); …; after = sample(pids)
after.cpu_percent(before)   # % of one core over the interval
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcSample", "descendants", "sample"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:  # the process may end while it is read
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                out += [int(c) for c in task.read_text().split()]
    except OSError:
        pass
    return out


def descendants(pids: Iterable[int]) -> list[int]:
    """``pids`` and every process below them."""
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo += _children(pid)
    return seen


def _one(pid: int) -> tuple[float, int, int]:
    """(cpu seconds, rss bytes, threads) of one process; zeros when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0.0, 0, 0
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime + stime, and cutime + cstime: the CPU of children it has reaped (PostgreSQL's
    # backends come and go; without it their work vanishes when they exit)
    cpu = sum(int(f) for f in fields[11:15]) / _TICKS
    return cpu, int(statm[1]) * _PAGE, int(fields[17])


@dataclass(frozen=True)
class ProcSample:
    at: float
    cpu_s: float
    rss_bytes: int
    threads: int
    processes: int

    def cpu_percent(self, earlier: ProcSample) -> float:
        """CPU use between ``earlier`` and this sample, in % of one core."""
        dt = self.at - earlier.at
        return 100.0 * (self.cpu_s - earlier.cpu_s) / dt if dt > 0 else 0.0


def sample(pids: Iterable[int], children: bool = True) -> ProcSample:
    """The summed CPU seconds, RSS and threads of ``pids`` (and their children)."""
    targets = descendants(pids) if children else list(pids)
    cpu, rss, threads, alive = 0.0, 0, 0, 0
    for pid in targets:
        c, r, t = _one(pid)
        cpu, rss, threads, alive = cpu + c, rss + r, threads + t, alive + (t > 0)
    return ProcSample(time.monotonic(), cpu, rss, threads, alive)
