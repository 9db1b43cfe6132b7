"""A small hardware/OS inventory sent at registration (deepened by later issues)."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

__all__ = ["collect_inventory"]


def _mem_total_kib() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def collect_inventory() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname()[:64],
        "cpus": os.cpu_count() or 0,
        "memory_kib": _mem_total_kib(),
        "kernel": platform.release()[:64],
        "machine": platform.machine(),
        "kvm_device": os.path.exists("/dev/kvm"),
    }
