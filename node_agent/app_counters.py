"""The restart and purge counters an app instance has already been acted on (EVE's idea).

The operator raises a counter; the node acts when the desired counter is higher than
the one it last acted on, then records it atomically in ``app-counters.json``, so an
agent restart neither repeats nor loses the command.  An app seen for the first time
takes its current counters as the baseline (a new app is not restarted).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from attestation.files import atomic_write
from protocol.desired_state import AppSpec

__all__ = ["ActedCounters"]

log = logging.getLogger(__name__)


class ActedCounters:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._acted: dict[str, dict[str, int]] = json.loads(path.read_text())
        except FileNotFoundError:
            self._acted = {}
        except ValueError:
            log.error("%s unreadable; taking the current counters as acted on", path)
            self._acted = {}

    def _save(self) -> None:
        atomic_write(self.path, json.dumps(self._acted, sort_keys=True).encode(), mode=0o600)

    def due(self, app: AppSpec) -> tuple[bool, bool]:
        """(restart due, purge due) for ``app``; records a baseline for a new app."""
        seen = self._acted.get(app.uuid)
        if seen is None:
            self._acted[app.uuid] = {"restart": app.restart_counter, "purge": app.purge_counter}
            self._save()
            return False, False
        return app.restart_counter > seen["restart"], app.purge_counter > seen["purge"]

    def acted(self, app: AppSpec, *, restart: bool = False, purge: bool = False) -> None:
        seen = self._acted.setdefault(app.uuid, {"restart": 0, "purge": 0})
        if restart:
            seen["restart"] = app.restart_counter
        if purge:
            seen["purge"] = app.purge_counter
        self._save()

    def keep_only(self, uuids: Iterable[str]) -> None:
        wanted = set(uuids)
        if set(self._acted) - wanted:
            self._acted = {k: v for k, v in self._acted.items() if k in wanted}
            self._save()
