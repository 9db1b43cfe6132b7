"""Metrics for the controller: node counters from /proc, app counters from the runtimes.

Counters are cumulative (EVE's style) so a lost sample costs nothing.  App stats are
looked up by the workloads' runtime ids (domain name, container id) that the
runtimes' ``list()`` returns; a workload whose stats cannot be read is skipped.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from node_agent.runtime.base import Workload, WorkloadState
from protocol.bounded_json import load_json
from protocol.messages import AppMetrics, MetricsMessage, NodeMetrics

__all__ = ["collect_metrics", "libvirt_stats", "node_metrics", "podman_stats"]

log = logging.getLogger(__name__)


def node_metrics(state_dir: Path, proc: Path = Path("/proc")) -> NodeMetrics:
    cpu = (proc / "stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(cpu[:8]) if i not in (3, 4))  # minus idle, iowait
    mem = {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in (proc / "meminfo").read_text().splitlines()
        if line.split()[1:2]
    }
    fs = os.statvfs(state_dir)
    rx = tx = 0
    for line in (proc / "net/dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() != "lo":
            fields = rest.split()
            rx, tx = rx + int(fields[0]), tx + int(fields[8])
    return NodeMetrics(
        cpu_seconds_total=busy / os.sysconf("SC_CLK_TCK"),
        memory_used_bytes=mem.get("MemTotal", 0) - mem.get("MemAvailable", 0),
        memory_total_bytes=mem.get("MemTotal", 0),
        disk_used_bytes=(fs.f_blocks - fs.f_bfree) * fs.f_frsize,
        disk_total_bytes=fs.f_blocks * fs.f_frsize,
        net_rx_bytes_total=rx,
        net_tx_bytes_total=tx,
        uptime_s=float((proc / "uptime").read_text().split()[0]),
    )


def libvirt_stats(uri: str, workloads: Iterable[Workload]) -> list[AppMetrics]:
    import libvirt

    out = []
    conn = libvirt.open(uri)
    try:
        for w in workloads:
            if w.state is not WorkloadState.RUNNING or not w.runtime_id:
                continue
            try:
                dom = conn.lookupByName(w.runtime_id)
                cpu, mem = _domain_cpu_memory(dom)
            except libvirt.libvirtError as exc:
                log.debug("no stats for %s: %s", w.runtime_id, exc)
                continue
            disk = int(w.extra.get("disk_allocated_bytes", "0") or 0)  # its writable disks
            out.append(
                AppMetrics(
                    uuid=w.app_uuid,
                    cpu_seconds_total=cpu,
                    memory_used_bytes=mem,
                    disk_used_bytes=disk,
                )
            )
    finally:
        conn.close()
    return out


def _domain_cpu_memory(dom: Any) -> tuple[float, int]:
    """CPU seconds and resident bytes of a running domain. The CPU time is ``info()``'s
    (libvirt reads the cgroup or, without the cpuacct controller, e.g. a libvirtd in a
    private mount namespace, the QEMU process), never ``getCPUStats``, which then fails."""
    import libvirt

    cpu = dom.info()[4] / 1e9
    try:
        mem = dom.memoryStats().get("rss", 0) * 1024
    except libvirt.libvirtError:
        mem = 0
    return float(cpu), int(mem)


def podman_stats(
    podman: str, global_args: Sequence[str], workloads: Iterable[Workload]
) -> list[AppMetrics]:
    running = {
        w.runtime_id: w.app_uuid
        for w in workloads
        if w.state is WorkloadState.RUNNING and w.runtime_id
    }
    if not running:
        return []
    try:  # raw numbers: podman 4's JSON output is humanised ("2.5MB")
        out = subprocess.run(
            [
                podman,
                *global_args,
                "stats",
                "--no-stream",
                "--no-reset",
                "--format",
                "{{json .ContainerStats}}",
                *running,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        rows = [load_json(line, max_depth=8) for line in out.splitlines() if line.strip()]
    except (subprocess.SubprocessError, OSError, ValueError) as exc:  # JsonRefused too
        log.debug("podman stats failed: %s", exc)
        return []
    return [m for row in rows if (m := _podman_row(row, running)) is not None]


def _podman_row(row: Any, running: dict[str, str]) -> AppMetrics | None:
    """One ``podman stats`` row as AppMetrics; None (logged) when it is not one."""
    if not isinstance(row, dict) or row.get("ContainerID") not in running:
        return None
    try:
        return AppMetrics(
            uuid=running[row["ContainerID"]],
            cpu_seconds_total=row.get("CPUNano", 0) / 1e9,
            memory_used_bytes=int(row.get("MemUsage", 0)),
            net_rx_bytes_total=int(row.get("NetInput", 0)),
            net_tx_bytes_total=int(row.get("NetOutput", 0)),
        )
    except (TypeError, ValueError) as exc:  # pydantic's ValidationError too
        log.warning("podman stats row for %s is unusable: %s", row.get("ContainerID"), exc)
        return None


def collect_metrics(state_dir: Path, app_metrics: list[AppMetrics]) -> MetricsMessage:
    return MetricsMessage(at=time.time(), node=node_metrics(state_dir), apps=app_metrics)
