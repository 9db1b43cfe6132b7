"""The agent's heartbeat file: proof of progress that a watchdog or a test can read.

``<state_dir>/heartbeat.json`` is rewritten atomically after every main-loop pass with the
agent's pid, how many reconcile passes it finished, how many config requests it sent and
the wall time (EVE's agents touch a file per pass for their watchdog the same way).  A
reader waits for ``passes`` to grow instead of sleeping and hoping a pass happened.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from attestation.files import atomic_write

__all__ = ["HEARTBEAT_FILE", "Heartbeat", "read_heartbeat", "write_heartbeat"]

HEARTBEAT_FILE = "heartbeat.json"


@dataclass(frozen=True)
class Heartbeat:
    pid: int
    passes: int
    config_requests: int
    at: float


def write_heartbeat(state_dir: Path, passes: int, config_requests: int) -> None:
    beat = Heartbeat(os.getpid(), passes, config_requests, time.time())
    atomic_write(state_dir / HEARTBEAT_FILE, json.dumps(asdict(beat)).encode(), mode=0o644)


def read_heartbeat(state_dir: Path) -> Heartbeat | None:
    """The last heartbeat (None: none yet, or unreadable)."""
    try:
        data = json.loads((state_dir / HEARTBEAT_FILE).read_text())
        return Heartbeat(
            int(data["pid"]), int(data["passes"]), int(data["config_requests"]), float(data["at"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
