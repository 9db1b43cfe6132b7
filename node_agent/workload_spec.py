"""What a runtime is given to run one app: the :class:`WorkloadSpec` built from the app's
spec, its verified image, its interfaces and, for VMs, its disks and passed-through devices.

VM apps booting a qcow2/raw image get a writable overlay on the verified blob and their
data disks from :mod:`node_agent.volumes`; their gpu/pci adapters are checked again against
sysfs (:func:`node_agent.passthrough.resolve_adapters`) at every build, so a device that
went away is an error before the start, not a failed QEMU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from node_agent import volumes
from node_agent.metadata import instance_metadata, meta_data_json
from node_agent.network import WorkloadNetworks
from node_agent.passthrough import resolve_adapters
from node_agent.runtime.base import DiskAttachment, WorkloadSpec
from protocol.desired_state import AppSpec

__all__ = ["DISK_IMAGE_FORMATS", "WorkloadPlace", "build_workload_spec"]

DISK_IMAGE_FORMATS = ("qcow2", "raw")


@dataclass(frozen=True)
class WorkloadPlace:
    """Where the workload lives: this node, the app's work dir, its verified image blob."""

    node_uuid: str
    work_dir: Path
    image_path: Path


def build_workload_spec(
    app: AppSpec,
    place: WorkloadPlace,
    nets: WorkloadNetworks,
    digest: str,
    vols: volumes.Volumes,
    sysfs_root: Path,
) -> WorkloadSpec:
    """The spec for ``app`` (``digest``: its :func:`~node_agent.spec_digest.spec_digest`)."""
    root: DiskAttachment | None = None
    data: tuple[DiskAttachment, ...] = ()
    pci: tuple[str, ...] = ()
    if app.kind == "vm":
        pci = resolve_adapters(app.adapters, sysfs_root)
        base = place.image_path if app.image.format in DISK_IMAGE_FORMATS else None
        root, data = vols.prepare(
            app.uuid, place.work_dir, base, app.image.format, app.resources.disk_mib, app.disks
        )
    return WorkloadSpec(
        app_uuid=app.uuid,
        name=app.name,
        node_uuid=place.node_uuid,
        image_path=place.image_path,
        image_sha256=app.image.sha256,
        image_format=app.image.format,
        work_dir=place.work_dir,
        vcpus=app.resources.vcpus,
        memory_mib=app.resources.memory_mib,
        command=tuple(app.command),
        env=tuple(sorted(app.env.items())),
        networks=nets.attachments,
        netns_path=nets.netns_path,
        usb_devices=tuple(a.match for a in app.adapters if a.kind == "usb"),
        pci_devices=pci,
        root_disk=root,
        data_disks=data,
        vtpm=app.vtpm,
        meta_data=meta_data_json(instance_metadata(app, place.node_uuid, nets.attachments)),
        user_data=app.user_data,
        spec_digest=digest,
    )
