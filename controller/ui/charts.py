"""Metrics over time for the node page: rates from cumulative counters, drawn as inline SVG.

Pure functions (no Flask, no database).  The agent sends cumulative counters
(``cpu_seconds_total``, ``net_*_bytes_total``); a rate is the difference between
two samples over the time between them, and a counter that went down (a reboot)
starts a new segment instead of a negative spike.  Charts use presentation classes
only (styled by ``ui.css``), so a strict Content-Security-Policy holds.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from html import escape
from typing import Any

from markupsafe import Markup

__all__ = ["Chart", "Series", "app_charts", "downsample", "node_charts", "render_svg"]

WIDTH, HEIGHT = 420, 190
PAD_L, PAD_R, PAD_T, PAD_B = 44, 10, 10, 24
MAX_POINTS = 240
Point = tuple[float, float]


@dataclass(frozen=True)
class Series:
    label: str
    points: list[Point]
    css: str


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    unit: str
    series: list[Series]

    @property
    def empty(self) -> bool:
        return not any(len(s.points) > 1 for s in self.series)

    def svg(self) -> Markup:
        return render_svg(self)


def _rate(samples: list[dict[str, Any]], get: Any, scale: float) -> list[Point]:
    out: list[Point] = []
    for prev, cur in itertools.pairwise(samples):
        dt_s = float(cur["at"]) - float(prev["at"])
        a, b = get(prev), get(cur)
        if dt_s <= 0 or a is None or b is None or b < a:
            continue
        out.append((float(cur["at"]), (b - a) / dt_s * scale))
    return out


def node_charts(samples: list[dict[str, Any]], cpus: int) -> list[Chart]:
    """CPU %, memory MiB and network KiB/s of a node from its metric samples."""
    samples = [x for x in samples if isinstance(x.get("node"), dict) and "at" in x]
    samples.sort(key=lambda x: float(x["at"]))

    def node(key: str) -> Any:
        return lambda x: x["node"].get(key)

    mib = 1024 * 1024
    memory = [(float(x["at"]), x["node"].get("memory_used_bytes", 0) / mib) for x in samples]
    total = [(float(x["at"]), x["node"].get("memory_total_bytes", 0) / mib) for x in samples]
    return [
        Chart(
            "cpu",
            "CPU",
            "%",
            [
                Series(
                    "CPU busy", _rate(samples, node("cpu_seconds_total"), 100 / max(cpus, 1)), "s0"
                )
            ],
        ),
        Chart(
            "memory",
            "Memory",
            "MiB",
            [Series("used", memory, "s0"), Series("total", total, "s1")],
        ),
        Chart(
            "network",
            "Network",
            "KiB/s",
            [
                Series("received", _rate(samples, node("net_rx_bytes_total"), 1 / 1024), "s0"),
                Series("sent", _rate(samples, node("net_tx_bytes_total"), 1 / 1024), "s1"),
            ],
        ),
    ]


MAX_APP_CHARTS = 6
_UNITS = {"fps": "frames/s", "latency_p50_ms": "ms", "latency_p99_ms": "ms"}


def app_charts(metrics: dict[str, Any]) -> list[Chart]:
    """One chart per value an app reports (``fps``, ``latency_p99_ms``, …; at most
    :data:`MAX_APP_CHARTS`), one series per node, from ``domain.app_metrics.app_metrics``."""
    names: list[str] = []
    for node in metrics.get("nodes", []):
        for point in node.get("series") or []:
            names += [k for k in point["values"] if k not in names]
    charts = []
    for name in sorted(names)[:MAX_APP_CHARTS]:
        series = [
            Series(
                node["node"],
                downsample(
                    [
                        (float(p["at"]), float(p["values"][name]))
                        for p in node.get("series") or []
                        if name in p["values"]
                    ]
                ),
                f"s{i % 2}",
            )
            for i, node in enumerate(metrics.get("nodes", []))
        ]
        charts.append(Chart(f"app-{name}", name.replace("_", " "), _UNITS.get(name, ""), series))
    return charts


def downsample(points: list[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most ``limit`` points: consecutive buckets averaged (a day of minutes → 240)."""
    if len(points) <= limit:
        return points
    size = -(-len(points) // limit)
    out = []
    for i in range(0, len(points), size):
        chunk = points[i : i + size]
        out.append((chunk[-1][0], sum(p[1] for p in chunk) / len(chunk)))
    return out


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** len(str(int(value))) / 10 if value >= 1 else 0.1
    for mult in (1, 2, 2.5, 5, 10):
        if step * mult >= value:
            return step * mult
    return value


def _fmt(value: float) -> str:
    if abs(value - round(value)) < 1e-9 and abs(value) >= 1:
        return f"{round(value)}"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M")


def render_svg(chart: Chart) -> Markup:
    """An accessible line chart (``role=img`` with a title and a description)."""
    pts = [p for s in chart.series for p in s.points]
    title_id, desc_id = f"chart-{chart.key}-title", f"chart-{chart.key}-desc"
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{title_id} {desc_id}">'
        f'<title id="{title_id}">{escape(chart.title)} ({escape(chart.unit)})</title>'
    )
    if chart.empty:
        desc = "Not enough samples yet."
        return Markup(
            f'{head}<desc id="{desc_id}">{desc}</desc>'
            f'<text class="axis" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            f"{desc}</text></svg>"
        )
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    top = _nice_max(max(p[1] for p in pts))
    span_x = (x1 - x0) or 1.0
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def xy(p: Point) -> str:
        x = PAD_L + (p[0] - x0) / span_x * plot_w
        y = PAD_T + plot_h - min(p[1], top) / top * plot_h
        return f"{x:.1f},{y:.1f}"

    parts = [head]
    last = "; ".join(
        f"{s.label} {_fmt(s.points[-1][1])} {chart.unit}" for s in chart.series if s.points
    )
    parts.append(
        f'<desc id="{desc_id}">{escape(chart.title)} from {_clock(x0)} to {_clock(x1)} UTC, '
        f"latest: {escape(last)}.</desc>"
    )
    for i in range(5):
        value = top * i / 4
        y = PAD_T + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(value)}</text>"
        )
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        parts.append(
            f'<text class="axis" x="{PAD_L + plot_w * frac:.1f}" y="{HEIGHT - 8}" '
            f'text-anchor="{anchor}">{_clock(x0 + span_x * frac)}</text>'
        )
    for series in chart.series:
        if len(series.points) > 1:
            coords = " ".join(xy(p) for p in downsample(series.points))
            parts.append(f'<polyline class="line {series.css}" points="{coords}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
