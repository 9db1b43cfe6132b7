"""The self-update files under ``<state>/agent`` (every write atomic)::

    launcher.json           LauncherState: written by the launcher only
    pending.json            {"version"}: written by the agent once a release is installed
    commit.json             {"version", "at"}: written by an agent on trial when it is healthy
    versions/<version>/     installed releases (node_agent, attestation, protocol, manifest.json)

The agent learns from the environment whether it runs under the launcher
(``OUTPOST_AGENT_LAUNCHER`` = the directory above) and whether it is on trial
(``OUTPOST_AGENT_TRIAL`` = its version).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attestation.files import atomic_write
from protocol.desired_state import AgentVersion

__all__ = [
    "ENV_LAUNCHER",
    "ENV_TRIAL",
    "LauncherState",
    "Outcome",
    "Paths",
    "StateError",
    "read_marker",
    "write_marker",
]

log = logging.getLogger(__name__)
ENV_LAUNCHER = "OUTPOST_AGENT_LAUNCHER"
ENV_TRIAL = "OUTPOST_AGENT_TRIAL"
MAX_FAILED = 32


class StateError(Exception):
    """A self-update state file is unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Trial(_Strict):
    version: AgentVersion
    previous: AgentVersion | None
    started_at: float
    deadline: float
    """Wall clock (a launcher restart keeps the trial's deadline)."""


class Outcome(_Strict):
    version: AgentVersion
    result: Literal["committed", "failed"]
    reason: str = Field(default="", max_length=1024)
    at: float


class LauncherState(_Strict):
    """Which version runs; ``None`` is the agent installed with the launcher (built-in)."""

    current: AgentVersion | None = None
    previous: AgentVersion | None = None
    trial: Trial | None = None
    last: Outcome | None = None
    failed: list[AgentVersion] = Field(default_factory=list, max_length=MAX_FAILED)
    """Versions that failed their trial: the agent does not install them again."""


class Marker(_Strict):
    version: AgentVersion
    at: float = 0.0


class Paths:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.state = self.root / "launcher.json"
        self.pending = self.root / "pending.json"
        self.commit = self.root / "commit.json"
        self.versions = self.root / "versions"

    @classmethod
    def from_env(cls) -> Paths | None:
        value = os.environ.get(ENV_LAUNCHER)
        return cls(Path(value)) if value else None

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def load(self) -> LauncherState:
        try:
            raw = self.state.read_bytes()
        except FileNotFoundError:
            return LauncherState()
        try:
            return LauncherState.model_validate_json(raw)
        except ValidationError as exc:
            raise StateError(f"{self.state}: {exc}") from exc

    def save(self, state: LauncherState) -> None:
        atomic_write(self.state, state.model_dump_json(indent=1).encode())


def write_marker(path: Path, version: str) -> None:
    atomic_write(path, json.dumps({"version": version, "at": time.time()}).encode())


def read_marker(path: Path) -> Marker | None:
    """The marker's contents; None when absent; an invalid one is removed and ignored."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return Marker.model_validate_json(raw)
    except ValidationError as exc:
        log.error("ignoring invalid %s: %s", path.name, exc)
        path.unlink(missing_ok=True)
        return None
