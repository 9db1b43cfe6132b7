"""What the simulated nodes see: requests by kind, latency percentiles, errors by kind,
polls per second over time, and how long an operator's change took to reach each node.

Latencies are kept as raw samples (``array('d')``, 8 bytes each: a million requests are
8 MB) so percentiles are exact. Counts per whole second of the run give the sustained
rate (the lowest and highest 10 s window beside the mean).
"""

from __future__ import annotations

import math
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KindSummary", "Stats", "percentile", "render_table"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[min(rank, len(sorted_values) - 1)]


@dataclass(frozen=True)
class KindSummary:
    kind: str
    ok: int
    errors: int
    per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class Stats:
    """Counters of one phase of a run (enrolment, steady state …)."""

    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    latencies_ms: dict[str, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))  # type: ignore[type-arg]
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(request kind, error kind) → count."""
    per_second: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    """kind → whole second since start → completed requests."""
    change_delays_s: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    """Operator change → the node holds it (seconds), one per (change, node)."""
    changes_marked: int = 0
    bytes_sent: Counter[str] = field(default_factory=Counter)
    bytes_received: Counter[str] = field(default_factory=Counter)

    # -- recording -------------------------------------------------------------
    def ok(self, kind: str, ms: float, sent: int = 0, received: int = 0) -> None:
        self.latencies_ms[kind].append(ms)
        self.per_second[kind][int(time.monotonic() - self.started)] += 1
        self.bytes_sent[kind] += sent
        self.bytes_received[kind] += received

    def error(self, kind: str, what: str) -> None:
        self.errors[(kind, what)] += 1

    def change_reached(self, delay_s: float) -> None:
        self.change_delays_s.append(delay_s)

    def finish(self) -> None:
        if self.ended is None:
            self.ended = time.monotonic()

    # -- across processes ------------------------------------------------------
    def plain(self) -> dict[str, Any]:
        """A picklable copy (for a result sent from a simulator process)."""
        return {
            "started": self.started,
            "ended": self.ended,
            "latencies_ms": {k: v.tolist() for k, v in self.latencies_ms.items()},
            "errors": dict(self.errors),
            "per_second": {k: dict(v) for k, v in self.per_second.items()},
            "change_delays_s": self.change_delays_s.tolist(),
            "changes_marked": self.changes_marked,
            "bytes_sent": dict(self.bytes_sent),
            "bytes_received": dict(self.bytes_received),
        }

    @classmethod
    def merged(cls, parts: Sequence[dict[str, Any]]) -> Stats:
        """One Stats from several processes' ``plain()`` copies (monotonic clocks are
        system-wide, so their seconds line up)."""
        out = cls(started=min(p["started"] for p in parts))
        ends = [p["ended"] for p in parts if p["ended"] is not None]
        out.ended = max(ends) if ends else None
        for p in parts:
            shift = int(p["started"] - out.started)
            for kind, values in p["latencies_ms"].items():
                out.latencies_ms[kind].extend(values)
            out.errors.update(p["errors"])
            for kind, seconds in p["per_second"].items():
                for sec, n in seconds.items():
                    out.per_second[kind][sec + shift] += n
            out.change_delays_s.extend(p["change_delays_s"])
            out.changes_marked += p["changes_marked"]
            out.bytes_sent.update(p["bytes_sent"])
            out.bytes_received.update(p["bytes_received"])
        return out

    # -- reading ---------------------------------------------------------------
    @property
    def elapsed_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def count(self, kind: str) -> int:
        return len(self.latencies_ms.get(kind, ()))

    def error_count(self, kind: str | None = None) -> int:
        return sum(n for (k, _), n in self.errors.items() if kind is None or k == kind)

    def rate(self, kind: str) -> float:
        return self.count(kind) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def window_rates(self, kind: str, window_s: int = 10, skip_s: int = 0) -> tuple[float, float]:
        """The lowest and highest rate over whole ``window_s`` windows after ``skip_s``."""
        seconds = self.per_second.get(kind, Counter())
        end = int(self.elapsed_s)
        rates = [
            sum(seconds[s] for s in range(w, w + window_s)) / window_s
            for w in range(skip_s, end - window_s + 1, window_s)
        ]
        return (min(rates), max(rates)) if rates else (math.nan, math.nan)

    def summary(self, kind: str) -> KindSummary:
        values = sorted(self.latencies_ms.get(kind, ()))
        return KindSummary(
            kind,
            len(values),
            self.error_count(kind),
            self.rate(kind),
            percentile(values, 0.50),
            percentile(values, 0.95),
            percentile(values, 0.99),
            values[-1] if values else math.nan,
        )

    def kinds(self) -> list[str]:
        return sorted(set(self.latencies_ms) | {k for k, _ in self.errors})

    def change_summary(self) -> dict[str, float]:
        values = sorted(self.change_delays_s)
        return {
            "marked": float(self.changes_marked),
            "reached": float(len(values)),
            "p50_s": percentile(values, 0.50),
            "p95_s": percentile(values, 0.95),
            "p99_s": percentile(values, 0.99),
            "max_s": values[-1] if values else math.nan,
        }

    # -- printing --------------------------------------------------------------
    def table(self) -> str:
        rows = [
            (
                s.kind,
                s.ok,
                s.errors,
                f"{s.per_s:.1f}",
                f"{s.p50_ms:.1f}",
                f"{s.p95_ms:.1f}",
                f"{s.p99_ms:.1f}",
                f"{s.max_ms:.1f}",
            )
            for s in (self.summary(k) for k in self.kinds())
        ]
        return render_table(
            ("request", "ok", "errors", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"), rows
        )

    def error_table(self) -> str:
        rows = [(k, what, n) for (k, what), n in sorted(self.errors.items())]
        return render_table(("request", "error", "count"), rows) if rows else "errors: none"

    def change_table(self) -> str:
        c = self.change_summary()
        return render_table(
            ("changes", "reached", "p50 s", "p95 s", "p99 s", "max s"),
            [
                (
                    int(c["marked"]),
                    int(c["reached"]),
                    f"{c['p50_s']:.2f}",
                    f"{c['p95_s']:.2f}",
                    f"{c['p99_s']:.2f}",
                    f"{c['max_s']:.2f}",
                )
            ],
        )


def render_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain text table, first column left-aligned and the rest right-aligned."""
    cells = [list(map(str, header)), *([str(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        parts = [r[0].ljust(widths[0])] + [
            v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
