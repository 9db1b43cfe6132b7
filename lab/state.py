"""The lab's state file ``<lab dir>/lab.json``: what the lab started and where.

Written atomically (temp file, fsync, rename) before and after every step of ``up``, so a
``down`` run from another process, or after ``up`` was killed, finds every process,
namespace and node the lab made.  ``lab.lock`` (an flock) keeps two mutating commands
(``up``/``down``/``deploy``) from working on the same lab at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from attestation.files import atomic_write
from lab.errors import LabError

__all__ = [
    "STATE_FILE",
    "ControllerRecord",
    "Kind",
    "LabState",
    "NetworkRecord",
    "NodeRecord",
    "Phase",
    "PodmanRecord",
    "ProcRef",
    "QemuRecord",
    "lab_lock",
    "load_state",
    "save_state",
]

STATE_FILE = "lab.json"
LOCK_FILE = "lab.lock"
MAX_NODES = 200

Kind = Literal["process", "qemu"]
Phase = Literal["starting", "up", "stopping", "down", "failed"]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
IfName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,15}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProcRef(_Model):
    """A process the lab started: its pid and start time (so a reused pid is never hit)."""

    pid: int = Field(gt=1)
    start_ticks: int = Field(ge=0)
    """Field 22 of /proc/<pid>/stat when it was started."""
    name: str = Field(max_length=128)


class ControllerRecord(_Model):
    host: IPv4Address
    """Where it listens (the lab bridge's address; 127.0.0.1 for qemu nodes)."""
    port: int = Field(ge=1, le=65535)
    public_url: str = Field(default="", max_length=256)
    """The URL in the onboarding bundle and image links, when nodes see the controller
    elsewhere than ``url`` (qemu nodes: their guestfwd address)."""
    data_dir: Path
    token_file: Path
    process: ProcRef | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def root_ca(self) -> Path:
        return self.data_dir / "pki" / "root-ca.pem"


class NetworkRecord(_Model):
    """The lab bridge on the host; each process node hangs off it by a veth pair."""

    bridge: IfName
    subnet: IPv4Network
    host_ip: IPv4Address
    open_ports: list[int] = Field(default_factory=list, max_length=8)
    """Host ports (``up --open-port``) the nodes may reach besides the controller's."""


class PodmanRecord(_Model):
    """The lab's private podman store (all process nodes share it; labels tell them apart)."""

    directory: Path
    storage_driver: Literal["overlay", "vfs"]

    @property
    def global_args(self) -> list[str]:
        d = self.directory
        return [
            "--root", str(d / "root"), "--runroot", str(d / "run"),
            "--tmpdir", str(d / "tmp"), "--storage-driver", self.storage_driver,
        ]  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return {"CONTAINERS_CONF": str(self.directory / "containers.conf")}


class NodeRecord(_Model):
    name: Name
    serial: Name
    kind: Kind
    dir: Path
    """Logs, settings and (for process nodes) the agent's state dir and the swtpm state."""
    netns: str = ""
    host_veth: IfName | None = None
    ip: IPv4Address | None = None
    uuid: str = ""
    """The node UUID the controller assigned (known once the node has onboarded)."""
    processes: dict[str, ProcRef] = Field(default_factory=dict)
    """Processes of this node by role: swtpm, agent (process nodes), qemu."""

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    @property
    def agent_log(self) -> Path:
        return self.dir / "agent.log"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"


class QemuRecord(_Model):
    """What qemu nodes are booted from and with."""

    image: Path
    memory_mib: int = Field(ge=256, le=65536)
    vcpus: int = Field(ge=1, le=64)
    accel: Literal["auto", "kvm", "tcg"] = "tcg"


class LabState(_Model):
    version: Literal[1] = 1
    lab_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{4}$")]
    dir: Path
    kind: Kind
    phase: Phase
    created_at: str
    libvirt_uri: str = Field(default="qemu:///system", max_length=512)
    controller: ControllerRecord
    network: NetworkRecord | None = None
    podman: PodmanRecord | None = None
    qemu: QemuRecord | None = None
    nodes: list[NodeRecord] = Field(default_factory=list, max_length=MAX_NODES)
    apps: list[Name] = Field(default_factory=list)
    """Apps deployed with ``outpost-lab deploy``."""
    error: str = Field(default="", max_length=4000)

    @property
    def cli_config(self) -> Path:
        """The ``outpost --config`` file for this lab's controller."""
        return self.dir / "cli.json"

    def node(self, name: str) -> NodeRecord:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def state_path(lab_dir: Path) -> Path:
    return Path(lab_dir) / STATE_FILE


def load_state(lab_dir: Path) -> LabState | None:
    """The lab's state, or None when ``lab_dir`` holds no lab."""
    path = state_path(lab_dir)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc}") from exc
    try:
        return LabState.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise LabError(
            f"{path} is not a valid lab state file ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]}); nothing was changed"
        ) from exc


def save_state(state: LabState) -> None:
    atomic_write(state_path(state.dir), state.model_dump_json(indent=2).encode(), mode=0o644)


@contextlib.contextmanager
def lab_lock(lab_dir: Path) -> Iterator[None]:
    """Hold the lab's lock (one mutating command at a time); released even on a crash."""
    Path(lab_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(lab_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise LabError(
                    f"another outpost-lab command is working on {lab_dir}; wait for it"
                ) from None
            raise
        yield
    finally:
        os.close(fd)
