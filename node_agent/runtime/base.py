"""The small interface every workload runtime implements.

The reconciler talks to runtimes only through :class:`Runtime`; the VM runtime
(libvirt/QEMU) and the container runtime (podman) implement it, and unit tests
use an in-memory fake.  A runtime owns only the workloads it labelled with this
node's UUID, so several agents (tests, the lab) can share one host daemon.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from node_agent import errors

__all__ = [
    "DiskAttachment",
    "NetAttachment",
    "PermanentError",
    "Runtime",
    "RuntimeError_",
    "TemporaryError",
    "Workload",
    "WorkloadSpec",
    "WorkloadState",
    "same_spec",
]


class RuntimeError_(Exception):
    """Base of runtime failures; the message carries the app and the cause."""


class TemporaryError(RuntimeError_, errors.TemporaryError):
    """Retry later (daemon busy, resource briefly unavailable)."""


class PermanentError(RuntimeError_, errors.PermanentError):
    """Retrying the same spec will not help (bad image, invalid spec)."""


class WorkloadState(enum.Enum):
    RUNNING = "running"
    STARTING = "starting"  # created or starting, not running yet (podman "created")
    STOPPED = "stopped"  # defined/created but not running (halted, exited, crashed)
    MISSING = "missing"


@dataclass(frozen=True)
class NetAttachment:
    """One interface of a workload on an app network (planned by ``node_agent.network``).

    A VM gets a virtio NIC with ``mac`` on ``bridge`` through a tap named ``host_ifname``
    and its ``ip`` by DHCP (a static lease); a container's interfaces are already set up in
    the workload's network namespace (``WorkloadSpec.netns_path``) with ``ip``/``mac``.
    """

    network: str
    bridge: str
    mac: str
    ip: str
    prefix: int
    gateway: str
    host_ifname: str


@dataclass(frozen=True)
class DiskAttachment:
    """A writable disk file prepared for a VM by :mod:`node_agent.volumes`.

    ``format`` is the file's own format (``qcow2``); ``backing``/``backing_format`` name
    the read-only verified image under a root overlay (empty for a blank data disk).
    ``name`` identifies a data disk (its serial inside the guest).
    """

    path: Path
    format: str = "qcow2"
    backing: Path | None = None
    backing_format: str = ""
    name: str = ""


@dataclass(frozen=True)
class WorkloadSpec:
    """What a runtime needs to run one app instance.

    ``image_path`` is a verified file in the node's image store (its sha256 was
    checked against ``image_sha256`` before the spec was built).  ``work_dir`` is
    a per-app directory the runtime may use (console logs, unpacked kernels).

    ``networks`` empty means no network at all (no NIC, ``--network none``).
    ``netns_path`` is the prepared network namespace a container joins (containers only).
    ``usb_devices`` are ``vendor:product`` ids (hex) passed through to a VM.
    ``pci_devices`` are full PCI addresses (``0000:01:00.0``), every function of the
    adapters' IOMMU groups, already checked by :mod:`node_agent.passthrough`.
    ``root_disk`` is the app's writable overlay over a qcow2/raw image and ``data_disks``
    its blank data disks (VMs booting a disk image; see :mod:`node_agent.volumes`).
    ``vtpm`` gives a VM its own emulated TPM 2.0.
    """

    app_uuid: str
    name: str
    node_uuid: str
    image_path: Path
    image_sha256: str
    image_format: str
    work_dir: Path
    vcpus: int = 1
    memory_mib: int = 128
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    networks: tuple[NetAttachment, ...] = ()
    netns_path: str = ""
    usb_devices: tuple[str, ...] = ()
    pci_devices: tuple[str, ...] = ()
    root_disk: DiskAttachment | None = None
    data_disks: tuple[DiskAttachment, ...] = ()
    vtpm: bool = False
    meta_data: str = ""
    """The app's instance metadata document (JSON, :mod:`node_agent.metadata.content`)."""
    user_data: str | None = None
    """The app's user-data (None: it has none). With ``meta_data`` it becomes a VM's NoCloud
    seed disk and a container's ``/run/outpost`` files and env."""
    spec_digest: str = ""
    """The digest of the app's spec this workload is made from
    (:func:`node_agent.spec_digest.spec_digest`, set by the reconciler); see :attr:`digest`."""

    @property
    def digest(self) -> str:
        """What the runtime stores with the workload (podman label, domain metadata) and
        gives back in :attr:`Workload.spec_digest`: ``spec_digest``, or for a spec built
        without one (tools, runtime tests) a digest of this spec's own fields."""
        if self.spec_digest:
            return self.spec_digest
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "spec_digest"}
        for name, default in (("meta_data", ""), ("user_data", None)):  # added later
            if fields[name] == default:
                del fields[name]
        body = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Workload:
    """A workload as the runtime observes it.

    ``detail`` says how it is (``exited (code 3)``, ``shut off (crashed)``);
    ``exit_code`` is a stopped container's exit code (None for VMs and running ones).
    """

    app_uuid: str
    state: WorkloadState
    runtime_id: str = ""  # domain name / container id
    image_sha256: str = ""  # the image it was created from, from its label/metadata
    detail: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    spec_digest: str = ""  # WorkloadSpec.spec_digest it was made from ("" unknown)
    exit_code: int | None = None


def same_spec(recorded: str, wanted: str) -> bool:
    """Is a workload whose stored spec digest is ``recorded`` made from the spec whose
    digest is ``wanted``?

    The one spec-change check, used by both runtimes and the reconciler; a workload with
    no recorded digest (made by an agent before digests were stored) counts as changed.
    """
    return bool(recorded) and recorded == wanted


class Runtime(Protocol):
    """A hypervisor or container engine, narrowed to what the reconciler needs."""

    kind: str  # "vm" or "container"

    def list(self) -> dict[str, Workload]:
        """Workloads of this node, keyed by app uuid (found by label/metadata)."""
        ...

    def start(self, spec: WorkloadSpec) -> Workload:
        """Create (if needed) and start the workload; idempotent."""
        ...

    def stop(self, app_uuid: str, timeout_s: float = 10.0) -> None:
        """Stop gracefully, then force; no error if already stopped or missing."""
        ...

    def remove(self, app_uuid: str) -> None:
        """Stop if needed and delete the workload; no error if missing."""
        ...
