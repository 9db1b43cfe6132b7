"""How often each app stopped on its own, kept across agent restarts.

``<state_dir>/app-restarts.json`` holds, per app, the digest of the spec the count is for,
the number of restarts after stops on its own, and how the last stop went (a container's
exit code, a VM's libvirt state and reason).  A new spec starts from zero.  The file is
rewritten atomically on every change; an unreadable one is logged and started afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from pydantic import Field, RootModel, StringConstraints, ValidationError

from attestation.files import atomic_write
from protocol.model_base import StrictModel

__all__ = ["RestartLedger", "StopRecord"]

log = logging.getLogger(__name__)


class StopRecord(StrictModel):
    spec: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    restarts: int = Field(default=0, ge=0, le=1_000_000)
    last_exit_code: int | None = Field(default=None, ge=-255, le=255)
    last_stop_reason: Annotated[str, StringConstraints(max_length=256)] = ""


class _Ledger(RootModel[dict[str, StopRecord]]):
    pass


class RestartLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._records = self._load()

    def _load(self) -> dict[str, StopRecord]:
        try:
            return _Ledger.model_validate_json(self.path.read_bytes()).root
        except FileNotFoundError:
            return {}
        except (OSError, ValidationError) as exc:
            log.error("restart counts %s unreadable (%s): counting from zero", self.path, exc)
            return {}

    def _save(self) -> None:
        body = _Ledger(dict(sorted(self._records.items()))).model_dump_json(indent=1)
        atomic_write(self.path, body.encode(), mode=0o644)

    def get(self, uuid: str, spec: str) -> StopRecord | None:
        """The record of ``uuid`` for the spec with digest ``spec`` (None: no stop yet)."""
        found = self._records.get(uuid)
        return found if found is not None and found.spec == spec else None

    def stopped(self, uuid: str, spec: str, exit_code: int | None, reason: str) -> StopRecord:
        """Count a stop on its own (and the restart that follows) and persist it."""
        before = self.get(uuid, spec)
        record = StopRecord(
            spec=spec,
            restarts=min((before.restarts if before else 0) + 1, 1_000_000),
            last_exit_code=exit_code
            if exit_code is not None and -255 <= exit_code <= 255
            else None,
            last_stop_reason=reason[:256],
        )
        self._records[uuid] = record
        self._save()
        return record

    def keep_only(self, uuids: Iterable[str]) -> None:
        keep = set(uuids)
        if set(self._records) - keep:
            self._records = {u: r for u, r in self._records.items() if u in keep}
            self._save()
