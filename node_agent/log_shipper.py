"""Collect log lines for the controller: the agent's own records and the apps' consoles.

* agent: a ``logging.Handler`` keeps the newest records in memory (bounded).
* apps: each app's ``console.log`` in its work dir is tailed from a saved offset
  (``log-offsets.json``, atomic); a rotated or truncated file is read from the start.
  A container's lines lose podman's CRI prefix (time, stream, full/partial tag): the
  text is shipped, at the time podman wrote it, a long line's parts joined again.

``collect()`` turns what is new into gzip'd batches (``LogBatchMessage`` bodies,
each within the protocol's caps) and puts them in the outbox with increasing
sequence numbers.
"""

from __future__ import annotations

import base64
import collections
import gzip
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from attestation.files import atomic_write
from node_agent.outbox import Outbox
from protocol.console_lines import parse_console_line
from protocol.messages import MAX_LOG_BATCH_GZ, MAX_LOG_BATCH_LINES

__all__ = ["AgentLogBuffer", "LogShipper", "console_lines"]

MAX_READ_PER_FILE = 1 << 20  # per collection pass
MAX_LINE = 8192


class AgentLogBuffer(logging.Handler):
    """Keeps the agent's newest log records (INFO and up) for shipping."""

    def __init__(self, capacity: int = 5000) -> None:
        super().__init__(logging.INFO)
        self._lines: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = {
                "ts": record.created,
                "level": record.levelname[:16],
                "msg": f"{record.name}: {record.getMessage()}"[:MAX_LINE],
            }
        except Exception:
            return
        with self._lock_:
            self._lines.append(line)

    def drain(self) -> list[dict[str, Any]]:
        with self._lock_:
            lines = list(self._lines)
            self._lines.clear()
        return lines


class LogShipper:
    def __init__(self, state_dir: Path, outbox: Outbox, agent_buffer: AgentLogBuffer) -> None:
        self.apps_dir = state_dir / "apps"
        self.offsets_path = state_dir / "log-offsets.json"
        self.outbox = outbox
        self.agent_buffer = agent_buffer
        try:
            self._offsets: dict[str, list[int]] = json.loads(self.offsets_path.read_text())
        except (FileNotFoundError, ValueError):
            self._offsets = {}

    def _tail(self, path: Path) -> list[dict[str, Any]]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return []
        inode, offset = self._offsets.get(str(path), [st.st_ino, 0])
        if inode != st.st_ino or offset > st.st_size:
            offset = 0  # rotated or truncated
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(MAX_READ_PER_FILE)
        complete = data.rfind(b"\n") + 1  # ship whole lines only
        self._offsets[str(path)] = [st.st_ino, offset + complete]
        return console_lines(
            [raw.decode("utf-8", "replace") for raw in data[:complete].splitlines()], time.time()
        )

    def collect(self) -> int:
        """Queue every new line as batches; returns the number of batches queued."""
        sources: list[tuple[str, list[dict[str, Any]]]] = [("agent", self.agent_buffer.drain())]
        if self.apps_dir.is_dir():
            for app_dir in sorted(self.apps_dir.iterdir()):
                sources.append((f"app:{app_dir.name}", self._tail(app_dir / "console.log")))
        queued = 0
        for source, lines in sources:
            for chunk in _chunks(lines):
                self.outbox.put_logs(
                    {"source": source, "seq": self.outbox.next_seq(), "lines_gz_b64": chunk}
                )
                queued += 1
        live = (
            {str(self.apps_dir / d / "console.log") for d in os.listdir(self.apps_dir)}
            if self.apps_dir.is_dir()
            else set()
        )
        self._offsets = {k: v for k, v in self._offsets.items() if k in live}
        atomic_write(self.offsets_path, json.dumps(self._offsets).encode(), mode=0o600)
        return queued


def console_lines(raws: list[str], now: float) -> list[dict[str, Any]]:
    """Log lines of a console's raw lines: CRI prefixes off, each stream's partial lines
    joined to the line that ends them (a run still open at the end is shipped as it is),
    text longer than a log line split over several; blank lines left out."""
    out: list[dict[str, Any]] = []
    open_parts: dict[str | None, list[tuple[str, float | None]]] = {}

    def emit(parts: list[tuple[str, float | None]]) -> None:
        text = "".join(t for t, _ in parts)
        ts = next((t for _, t in parts if t is not None), now)
        if text.strip():
            out.extend(
                {"ts": ts, "level": "INFO", "msg": text[i : i + MAX_LINE]}
                for i in range(0, len(text), MAX_LINE)
            )

    for raw in raws:
        line = parse_console_line(raw)
        parts = [*open_parts.pop(line.stream, []), (line.text, line.ts)]
        if line.partial:
            open_parts[line.stream] = parts
        else:
            emit(parts)
    for parts in open_parts.values():
        emit(parts)
    return out


def _chunks(lines: list[dict[str, Any]]) -> list[str]:
    """Split lines into base64 gzip blobs that respect the protocol's caps."""
    out, start = [], 0
    while start < len(lines):
        end = min(len(lines), start + MAX_LOG_BATCH_LINES)
        while True:
            raw = "\n".join(json.dumps(x) for x in lines[start:end]).encode()
            blob = gzip.compress(raw, mtime=0)
            if len(blob) <= MAX_LOG_BATCH_GZ or end - start == 1:
                break
            end = start + (end - start) // 2
        out.append(base64.b64encode(blob).decode())
        start = end
    return out
