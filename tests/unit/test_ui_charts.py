"""Metrics charts: rates from cumulative counters, resets, and the SVG they draw."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from controller.ui.charts import downsample, node_charts


def _sample(at: float, cpu: float, rx: int = 0) -> dict:  # type: ignore[type-arg]
    return {
        "at": at,
        "node": {
            "cpu_seconds_total": cpu,
            "memory_used_bytes": 64 * 1024**2,
            "memory_total_bytes": 128 * 1024**2,
            "net_rx_bytes_total": rx,
            "net_tx_bytes_total": 0,
        },
    }


def test_rates_come_from_counter_differences_and_skip_resets():
    samples = [_sample(0, 0), _sample(10, 5), _sample(20, 1), _sample(30, 3)]  # reboot at 20
    cpu, memory, _net = node_charts(samples, cpus=1)
    assert cpu.series[0].points == [(10.0, 50.0), (30.0, 20.0)]
    assert memory.series[0].points[0] == (0.0, 64.0)
    assert memory.series[1].points[-1] == (30.0, 128.0)


def test_samples_arrive_in_any_order_and_bad_ones_are_ignored():
    samples = [_sample(20, 4), {"at": 5}, _sample(0, 0), {"node": {}}, _sample(10, 2)]
    cpu = node_charts(samples, cpus=2)[0]
    assert cpu.series[0].points == [(10.0, 10.0), (20.0, 10.0)]


def test_the_svg_is_accessible_and_well_formed():
    samples = [_sample(60 * i, 6.0 * i, rx=1024 * 60 * i) for i in range(5)]
    for chart in node_charts(samples, cpus=1):
        svg = str(chart.svg())
        root = ElementTree.fromstring(svg)
        assert root.get("role") == "img"
        assert root.get("aria-labelledby") == f"chart-{chart.key}-title chart-{chart.key}-desc"
        assert "style=" not in svg  # styled by classes: the CSP forbids inline styles
    net = str(node_charts(samples, cpus=1)[2].svg())
    assert "latest: received 1 KiB/s" in net
    assert re.search(r'class="line s0" points="(\d+\.\d,\d+\.\d ?){4}"', net)


def test_an_empty_chart_says_so():
    chart = node_charts([_sample(0, 0)], cpus=1)[0]
    assert chart.empty and "Not enough samples yet." in str(chart.svg())


def test_long_series_are_averaged_down_for_drawing():
    points = [(float(t), float(t % 2)) for t in range(1440)]
    drawn = downsample(points)
    assert len(drawn) == 240
    assert drawn[0] == (5.0, 0.5) and drawn[-1][0] == 1439.0
    assert downsample(points[:10]) == points[:10]
