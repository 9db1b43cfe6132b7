"""Metrics from the real host and a real podman container."""

from __future__ import annotations

import pytest

from node_agent.metrics import collect_metrics, podman_stats
from tests.integration.test_container_podman import make_spec

pytestmark = pytest.mark.integration


def test_node_metrics_are_read_from_the_host(tmp_path):
    msg = collect_metrics(tmp_path, [])
    assert msg.node.memory_total_bytes > msg.node.memory_used_bytes > 0
    assert msg.node.cpu_seconds_total > 0 and msg.node.disk_total_bytes > 0


def test_a_running_containers_counters_are_reported(
    container_runtime, podman_engine, busybox_image, tmp_path
):
    spec = make_spec(
        container_runtime,
        busybox_image,
        tmp_path,
        command=("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 3600"),
    )
    container_runtime.start(spec)
    workloads = container_runtime.list().values()
    (stats,) = podman_stats("podman", podman_engine.global_args, workloads)
    assert stats.uuid == spec.app_uuid
    assert stats.cpu_seconds_total > 0 and stats.memory_used_bytes > 0
