"""VM policy: how Outpost turns a :class:`WorkloadSpec` into a libvirt :class:`Domain`.

Closed by default: a VM gets exactly a CPU, memory, its boot source and one serial port
whose output goes to ``<work_dir>/console.log`` (appended across restarts); the port is a
host pty that only libvirt's console stream reaches (the agent's remote console, under a
grant): no network console.  No NIC unless the app is on app networks (then one virtio NIC per
network, on that network's bridge, with the planned MAC and tap name), no USB bus
(``<controller type='usb' model='none'/>``) unless USB devices are passed through (then an
xHCI controller and one ``<hostdev>`` per vendor:product), no graphics, so no video, no
sound, no channels, no balloon; ACPI on so the guest can be shut down gracefully (and
find a TPM); power-off and crash destroy the domain (it stays defined, shut off).

User-data: an app with ``user_data`` gets its NoCloud seed (:mod:`node_agent.metadata.seed`:
FAT labelled ``cidata`` with ``meta-data`` and ``user-data``, built and verified in the
work dir at every start) as a read-only raw virtio disk after all others.

On request: a vTPM (``<tpm model='tpm-crb'>`` with libvirt's swtpm ``emulator`` backend),
PCI functions passed through (``<hostdev type='pci' managed='yes'>``, one per function; the
caller has checked that they are every function of their IOMMU groups), blank data disks
(virtio, after the root disk, each with its name as the disk serial).

CPU: under TCG the guest gets QEMU's ``maximum`` model (every feature TCG emulates: SSE4,
AVX2 for OpenVINO and the like), under KVM ``host-model``.

Image formats:

- ``kernel-bundle``: an uncompressed tar of exactly the regular files ``kernel``,
  ``initrd`` and ``cmdline``, unpacked into ``<work_dir>/kernel-bundle/`` and booted
  directly.  The image file's sha256 was verified by the caller; this module still refuses
  any other member, path or file type.
- ``qcow2``/``raw``: a disk image booted by the firmware through
  the app's writable qcow2 overlay (``spec.root_disk``, made by :mod:`node_agent.volumes`,
  ``<boot order='1'/>``: never a data disk) whose ``<backingStore>`` is the read-only
  verified image.

Pure functions plus file unpacking: no libvirt calls (those live in :mod:`vm`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from node_agent.metadata.seed import SEED_FILE, SEED_LABEL, build_seed
from node_agent.runtime.base import DiskAttachment, PermanentError, TemporaryError, WorkloadSpec
from node_agent.runtime.domain_xml import (
    BackingStore,
    Controller,
    Cpu,
    Devices,
    Disk,
    Domain,
    Features,
    HostdevPci,
    HostdevUsb,
    Interface,
    MemBalloon,
    Memory,
    Os,
    OsDiskBoot,
    OsKernelBoot,
    OutpostMetadata,
    Serial,
    Tpm,
    Vcpu,
)

__all__ = [
    "BUNDLE_DIR",
    "CONSOLE_LOG",
    "DISK_FORMATS",
    "KERNEL_BUNDLE",
    "KernelBundleFiles",
    "build_domain",
    "console_log_path",
    "domain_name",
    "domain_type",
    "extract_kernel_bundle",
    "prepare_domain",
    "prepare_seed",
    "remove_kernel_bundle",
]

KERNEL_BUNDLE = "kernel-bundle"
"""The image format booted directly (kernel, initrd, command line)."""
DISK_FORMATS = ("qcow2", "raw")
"""Disk image formats booted by the firmware through a qcow2 overlay."""
BUNDLE_DIR = "kernel-bundle"
"""Sub-directory of the work dir holding the unpacked kernel, initrd and cmdline."""
CONSOLE_LOG = "console.log"
"""File in the work dir receiving the serial console (kept when the app is removed)."""

_MEMBERS = ("kernel", "initrd", "cmdline")
_REQUIRED = ("kernel",)
_MAX_CMDLINE = 4096
_DOMAIN_TYPES = {"kvm": "kvm", "tcg": "qemu"}
_CPU_MODES = {"kvm": "host-model", "tcg": "maximum"}
_MAX_DATA_DISKS = 8
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class KernelBundleFiles:
    """An unpacked kernel-bundle: file paths and the command line text."""

    directory: Path
    kernel: Path
    initrd: Path | None
    cmdline: str


def domain_name(node_uuid: str, app_uuid: str) -> str:
    """``outpost-<node[:8]>-<app[:8]>``: unique per node when agents share a host daemon."""
    return f"outpost-{node_uuid[:8]}-{app_uuid[:8]}"


def domain_type(accel: str) -> str:
    """libvirt domain type for an accelerator: ``kvm`` → ``kvm``, ``tcg`` → ``qemu``."""
    try:
        return _DOMAIN_TYPES[accel]
    except KeyError:
        raise ValueError(f"unknown accelerator {accel!r} (expected kvm or tcg)") from None


def console_log_path(work_dir: Path) -> Path:
    return Path(work_dir) / CONSOLE_LOG


def _member_name(member: tarfile.TarInfo, image: Path) -> str:
    name = member.name.removeprefix("./")
    if name not in _MEMBERS:
        allowed = ", ".join(_MEMBERS)
        raise PermanentError(
            f"{image}: kernel-bundle member {member.name!r} not allowed ({allowed})"
        )
    if not member.isreg():
        raise PermanentError(f"{image}: kernel-bundle member {member.name!r} is not a regular file")
    return name


def _write_atomic(source: IO[bytes], target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def extract_kernel_bundle(image_path: Path, work_dir: Path) -> KernelBundleFiles:
    """Unpack a kernel-bundle tar into ``work_dir/kernel-bundle`` (mode 0755, files 0644).

    Every member is checked before anything is written: only regular files named
    ``kernel``, ``initrd`` or ``cmdline`` (optionally ``./``-prefixed), each at most once,
    with ``kernel`` required.  Raises :class:`PermanentError` for anything else.
    """
    image_path = Path(image_path)
    directory = Path(work_dir) / BUNDLE_DIR
    try:
        with tarfile.open(image_path, mode="r:") as archive:
            members, cmdline = _check_members(archive, image_path)
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
            for name in ("kernel", "initrd"):
                if name in members:
                    source = archive.extractfile(members[name])
                    assert source is not None  # regular file
                    _write_atomic(source, directory / name)
    except tarfile.TarError as exc:
        raise PermanentError(f"{image_path}: not a readable uncompressed tar: {exc}") from exc
    except OSError as exc:
        raise TemporaryError(f"{image_path}: unpacking into {directory}: {exc}") from exc
    return KernelBundleFiles(
        directory=directory,
        kernel=directory / "kernel",
        initrd=directory / "initrd" if "initrd" in members else None,
        cmdline=cmdline,
    )


def _check_members(archive: tarfile.TarFile, image: Path) -> tuple[dict[str, tarfile.TarInfo], str]:
    """Validate every member before anything is written; return them and the cmdline."""
    members: dict[str, tarfile.TarInfo] = {}
    for member in archive.getmembers():
        name = _member_name(member, image)
        if name in members:
            raise PermanentError(f"{image}: kernel-bundle member {name!r} is duplicated")
        members[name] = member
    missing = [name for name in _REQUIRED if name not in members]
    if missing:
        raise PermanentError(f"{image}: kernel-bundle lacks {', '.join(missing)}")
    if "cmdline" not in members:
        return members, ""
    if members["cmdline"].size > _MAX_CMDLINE:
        raise PermanentError(f"{image}: kernel-bundle cmdline is too long")
    source = archive.extractfile(members["cmdline"])
    assert source is not None  # regular file
    try:
        cmdline = source.read().decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PermanentError(f"{image}: kernel-bundle cmdline: {exc}") from exc
    if not cmdline.isprintable():
        raise PermanentError(f"{image}: kernel-bundle cmdline has control characters")
    return members, cmdline


def remove_kernel_bundle(bundle_directory: Path) -> None:
    """Delete the files :func:`extract_kernel_bundle` made, and the directory if then empty.

    Only ``kernel``/``initrd`` in a directory named ``kernel-bundle`` are removed, so a
    path read back from a domain definition can never make this delete anything else.
    """
    directory = Path(bundle_directory)
    if directory.name != BUNDLE_DIR:
        raise ValueError(f"{directory} is not a {BUNDLE_DIR} directory")
    for name in ("kernel", "initrd"):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    with contextlib.suppress(FileNotFoundError, OSError):
        directory.rmdir()


def _usb_hostdevs(spec: WorkloadSpec) -> tuple[HostdevUsb, ...]:
    hostdevs = []
    for ident in spec.usb_devices:
        vendor, _, product = ident.lower().partition(":")
        if len(vendor) != 4 or len(product) != 4 or not all(c in _HEX for c in vendor + product):
            raise PermanentError(f"app {spec.app_uuid}: invalid USB id {ident!r} (vvvv:pppp)")
        hostdevs.append(HostdevUsb(vendor=f"0x{vendor}", product=f"0x{product}"))
    return tuple(hostdevs)


def _pci_hostdevs(spec: WorkloadSpec) -> tuple[HostdevPci, ...]:
    hostdevs = []
    for address in spec.pci_devices:
        try:
            hostdevs.append(HostdevPci.from_address(address.lower()))
        except ValueError as exc:
            raise PermanentError(f"app {spec.app_uuid}: {exc}") from None
    if len({h.address for h in hostdevs}) != len(hostdevs):
        raise PermanentError(f"app {spec.app_uuid}: a PCI function is listed twice")
    return tuple(hostdevs)


def _target_dev(index: int) -> str:
    return f"vd{chr(ord('a') + index)}"


def _disks(spec: WorkloadSpec, boots_from_disk: bool, seed: Path | None) -> tuple[Disk, ...]:
    """The root overlay (vda, disk images only), the data disks, then the NoCloud seed."""
    disks: list[Disk] = []
    if boots_from_disk:
        root = spec.root_disk
        if root is None or root.backing is None:
            raise PermanentError(
                f"app {spec.app_uuid}: a {spec.image_format} image boots through a root "
                "overlay, and none was prepared"
            )
        disks.append(
            Disk(
                source=str(root.path),
                target_dev="vda",
                driver_type=root.format,
                backing=BackingStore(source=str(root.backing), format=root.backing_format),
                boot_order=1,
            )
        )
    if len(spec.data_disks) > _MAX_DATA_DISKS:
        raise PermanentError(f"app {spec.app_uuid}: more than {_MAX_DATA_DISKS} data disks")
    for data in spec.data_disks:
        disks.append(_data_disk(data, _target_dev(len(disks))))
    if seed is not None:
        disks.append(
            Disk(
                source=str(seed),
                target_dev=_target_dev(len(disks)),
                driver_type="raw",
                readonly=True,
                serial=SEED_LABEL,
            )
        )
    return tuple(disks)


def _data_disk(data: DiskAttachment, target_dev: str) -> Disk:
    return Disk(
        source=str(data.path),
        target_dev=target_dev,
        driver_type=data.format,
        serial=data.name,
    )


def build_domain(
    spec: WorkloadSpec,
    accel: str,
    files: KernelBundleFiles | None = None,
    *,
    uuid: str = "",
    machine: str = "pc",
    seed: Path | None = None,
) -> Domain:
    """The domain definition for ``spec`` (pure: touches no files).

    ``files``: the unpacked kernel-bundle to boot directly; None boots ``spec.root_disk``.
    ``seed``: the app's NoCloud seed disk (made by :func:`prepare_domain`), if it has one.
    """
    if spec.vcpus < 1 or spec.memory_mib < 1:
        raise PermanentError(
            f"app {spec.app_uuid}: invalid resources vcpus={spec.vcpus} memory={spec.memory_mib}MiB"
        )
    usb = _usb_hostdevs(spec)
    usb_bus = Controller(type="usb", model="qemu-xhci" if usb else "none")
    os: Os
    if files is not None:
        os = OsKernelBoot(
            kernel=str(files.kernel),
            initrd=str(files.initrd) if files.initrd else "",
            cmdline=files.cmdline,
            machine=machine,
        )
    else:
        os = OsDiskBoot(boot_devs=(), machine=machine)  # the root disk has boot order 1
    log_file = str(console_log_path(spec.work_dir))
    interfaces = tuple(
        Interface(source_bridge=n.bridge, mac=n.mac, model="virtio", target_dev=n.host_ifname)
        for n in spec.networks
    )
    return Domain(
        type=domain_type(accel),
        name=domain_name(spec.node_uuid, spec.app_uuid),
        uuid=uuid,
        memory=Memory(mib=spec.memory_mib),
        vcpu=Vcpu(count=spec.vcpus),
        os=os,
        features=Features(acpi=True),
        cpu=Cpu(mode=_CPU_MODES[accel]),
        on_poweroff="destroy",
        on_reboot="restart",
        on_crash="destroy",
        devices=Devices(
            disks=_disks(spec, boots_from_disk=files is None, seed=seed),
            controllers=(usb_bus,),
            interfaces=interfaces,
            serials=(Serial(type="pty", log_file=log_file, append=True),),
            hostdevs=(*usb, *_pci_hostdevs(spec)),
            tpms=(Tpm(),) if spec.vtpm else (),
            memballoon=MemBalloon(model="none"),
        ),
        metadata=OutpostMetadata(
            app_uuid=spec.app_uuid,
            node_uuid=spec.node_uuid,
            image_sha256=spec.image_sha256,
            app_name=spec.name,
            spec_sha256=spec.digest,
        ),
    )


def prepare_seed(spec: WorkloadSpec) -> Path | None:
    """Build (and verify) the app's NoCloud seed in its work dir; None without user-data."""
    path = Path(spec.work_dir) / SEED_FILE
    if spec.user_data is None:
        path.unlink(missing_ok=True)
        return None
    return build_seed(path, spec.meta_data.encode(), spec.user_data.encode("utf-8"))


def prepare_domain(spec: WorkloadSpec, accel: str, *, uuid: str = "") -> Domain:
    """Check the image format, unpack a kernel-bundle into the work dir, build the NoCloud
    seed (apps with user-data), build the domain."""
    if spec.image_format in DISK_FORMATS:
        return build_domain(spec, accel, None, uuid=uuid, seed=prepare_seed(spec))
    if spec.image_format != KERNEL_BUNDLE:
        supported = ", ".join((KERNEL_BUNDLE, *DISK_FORMATS))
        raise PermanentError(
            f"app {spec.app_uuid}: image format {spec.image_format!r} is not supported by the "
            f"VM runtime (supported: {supported})"
        )
    files = extract_kernel_bundle(spec.image_path, spec.work_dir)
    return build_domain(spec, accel, files, uuid=uuid, seed=prepare_seed(spec))
