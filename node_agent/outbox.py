"""The on-disk outbox: what the node must tell the controller survives outages and restarts.

Two kinds of entries under ``<state_dir>/outbox``:

    info.json          the latest info message only (state: a newer one supersedes it)
    logs/<seq>.json    log batches in order, bounded by count and bytes (oldest dropped,
                       and the drop itself reported as a log line)

Writes are atomic (temp, fsync, rename); an entry is deleted only after the
controller acknowledged it, so nothing is lost when the controller or the agent
goes away, and a batch resent after a crash is deduplicated by its sequence number.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attestation.files import atomic_write

__all__ = ["Outbox"]

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, state_dir: Path, max_batches: int = 1000, max_bytes: int = 64 << 20) -> None:
        self.root = state_dir / "outbox"
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self.max_batches, self.max_bytes = max_batches, max_bytes
        self.dropped = 0

    # -- info: latest wins ---------------------------------------------------------
    def put_info(self, message: dict[str, Any]) -> None:
        atomic_write(self.root / "info.json", json.dumps(message).encode(), mode=0o600)

    def pending_info(self) -> dict[str, Any] | None:
        try:
            found = json.loads((self.root / "info.json").read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            found = None
        if not isinstance(found, dict):
            log.error("outbox info.json unreadable; dropping it")
            (self.root / "info.json").unlink(missing_ok=True)
            return None
        return found

    def info_delivered(self, message: dict[str, Any]) -> None:
        """Forget the info message if it is still the one that was sent."""
        if self.pending_info() == message:
            (self.root / "info.json").unlink(missing_ok=True)

    # -- logs: ordered, bounded ------------------------------------------------------
    def _batches(self) -> list[Path]:
        return sorted(self.logs.glob("*.json"), key=lambda p: int(p.stem))

    def next_seq(self) -> int:
        batches = self._batches()
        state = self.root / "seq"
        last = int(state.read_text()) if state.exists() else -1
        if batches:
            last = max(last, int(batches[-1].stem))
        return last + 1

    def put_logs(self, batch: dict[str, Any]) -> None:
        """Queue a batch (its ``seq`` names the file); drop the oldest beyond the bounds."""
        seq = int(batch["seq"])
        atomic_write(self.logs / f"{seq}.json", json.dumps(batch).encode(), mode=0o600)
        atomic_write(self.root / "seq", str(seq).encode(), mode=0o600)
        batches = self._batches()
        total = sum(p.stat().st_size for p in batches)
        while batches and (len(batches) > self.max_batches or total > self.max_bytes):
            oldest = batches.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink()
            self.dropped += 1
        if self.dropped:
            log.warning("outbox full: %d log batches dropped so far", self.dropped)

    def deliver_logs(self, send: Callable[[dict[str, Any]], None], limit: int = 50) -> int:
        """Send queued batches oldest first; stop at the first failure. Returns how many went."""
        sent = 0
        for path in self._batches()[:limit]:
            try:
                batch = json.loads(path.read_text())
            except ValueError:
                log.error("outbox batch %s unreadable; dropping it", path.name)
                path.unlink()
                continue
            send(batch)  # raises when the controller cannot take it: keep the rest queued
            path.unlink()
            sent += 1
        return sent

    def queued(self) -> int:
        return len(self._batches())
