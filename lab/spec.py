"""What the user asked for, validated before anything is touched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lab.errors import UsageError
from lab.state import MAX_NODES, Kind

__all__ = ["DEFAULT_DIR", "DEFAULT_PORT", "UpRequest", "lab_dir", "lab_id_for", "parse_up"]

DEFAULT_DIR = Path("/tmp/outpost-lab")
DEFAULT_PORT = 9443


def lab_dir(value: str | Path | None) -> Path:
    """``--dir``, else ``$OUTPOST_LAB_DIR``, else /tmp/outpost-lab (absolute, resolved)."""
    raw = value or os.environ.get("OUTPOST_LAB_DIR") or DEFAULT_DIR
    return Path(raw).expanduser().resolve()


def lab_id_for(directory: Path) -> str:
    """4 hex digits naming the lab's bridge and namespaces (two lab dirs → two labs)."""
    return hashlib.sha256(str(directory).encode()).hexdigest()[:4]


class UpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: int = Field(ge=1, le=MAX_NODES)
    kind: Kind = "process"
    dir: Path
    controller_port: int = Field(default=DEFAULT_PORT, ge=1024, le=65535)
    timeout_s: float = Field(default=900.0, ge=10, le=7200)
    """How long ``up`` waits for every node to attest."""
    libvirt_uri: str = Field(default="qemu:///system", min_length=1, max_length=512)
    memory_mib: int = Field(default=1024, ge=512, le=65536)
    """qemu nodes: guest memory (the node image needs 512 MiB at least)."""
    vcpus: int = Field(default=2, ge=1, le=64)
    """qemu nodes: guest vCPUs."""
    accel: Literal["auto", "kvm", "tcg"] = "tcg"
    """qemu nodes: TCG by default (nested KVM hangs on hosts like the CI's); auto probes."""
    image: Path | None = None
    """qemu nodes: the node image (default: build/node/outpost-node.qcow2)."""
    open_ports: tuple[Annotated[int, Field(ge=1024, le=65535)], ...] = Field(
        default=(), max_length=8
    )
    """process nodes: host ports the nodes may reach (a datastore or site cache the tester
    runs on the lab host) besides the controller's."""

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        if value == Path("/") or value == Path.home():
            raise ValueError(f"{value} cannot be a lab dir")
        return value


_FLAGS = {"timeout_s": "--timeout", "memory_mib": "--memory", "vcpus": "--vcpus"}


def _flag(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def parse_up(**fields: object) -> UpRequest:
    """The request, or a UsageError naming each bad field."""
    try:
        return UpRequest.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{_flag(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"invalid arguments: {problems}") from exc
