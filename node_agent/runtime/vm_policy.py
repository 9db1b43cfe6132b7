"""VM policy: how Outpost turns a :class:`WorkloadSpec` into a libvirt :class:`Domain`.

Closed by default: a VM gets exactly a CPU, memory, a directly booted kernel and one
serial console whose output goes to ``<work_dir>/console.log``.  No NIC unless the app is
on app networks (then one virtio NIC per network, on that network's bridge, with the
planned MAC and tap name), no USB bus (``<controller type='usb' model='none'/>``) unless
USB devices are passed through (then an xHCI controller and one ``<hostdev>`` per
vendor:product), no graphics, so no video, no sound, no channels, no balloon; ACPI on so
the guest can be shut down gracefully; power-off and crash destroy the domain (it stays
defined, shut off).

Image formats: only ``kernel-bundle`` for now, an uncompressed tar of exactly the regular
files ``kernel``, ``initrd`` and ``cmdline``, unpacked into ``<work_dir>/kernel-bundle/``.
The image file's sha256 was verified by the caller; this module still refuses any other
member, path or file type.

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

from node_agent.runtime.base import PermanentError, TemporaryError, WorkloadSpec
from node_agent.runtime.domain_xml import (
    Console,
    Controller,
    Devices,
    Domain,
    Features,
    HostdevUsb,
    Interface,
    MemBalloon,
    Memory,
    OsKernelBoot,
    OutpostMetadata,
    Serial,
    Vcpu,
)

__all__ = [
    "BUNDLE_DIR",
    "CONSOLE_LOG",
    "KERNEL_BUNDLE",
    "KernelBundleFiles",
    "build_domain",
    "console_log_path",
    "domain_name",
    "domain_type",
    "extract_kernel_bundle",
    "prepare_domain",
    "remove_kernel_bundle",
]

KERNEL_BUNDLE = "kernel-bundle"
"""The image format this policy boots."""
BUNDLE_DIR = "kernel-bundle"
"""Sub-directory of the work dir holding the unpacked kernel, initrd and cmdline."""
CONSOLE_LOG = "console.log"
"""File in the work dir receiving the serial console (kept when the app is removed)."""

_MEMBERS = ("kernel", "initrd", "cmdline")
_REQUIRED = ("kernel",)
_MAX_CMDLINE = 4096
_DOMAIN_TYPES = {"kvm": "kvm", "tcg": "qemu"}
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


def build_domain(
    spec: WorkloadSpec, accel: str, files: KernelBundleFiles, *, uuid: str = "", machine: str = "pc"
) -> Domain:
    """The domain definition for ``spec`` booting ``files`` (pure: touches no files)."""
    if spec.vcpus < 1 or spec.memory_mib < 1:
        raise PermanentError(
            f"app {spec.app_uuid}: invalid resources vcpus={spec.vcpus} memory={spec.memory_mib}MiB"
        )
    hostdevs = _usb_hostdevs(spec)
    usb_bus = Controller(type="usb", model="qemu-xhci" if hostdevs else "none")
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
        os=OsKernelBoot(
            kernel=str(files.kernel),
            initrd=str(files.initrd) if files.initrd else "",
            cmdline=files.cmdline,
            machine=machine,
        ),
        features=Features(acpi=True),
        on_poweroff="destroy",
        on_reboot="restart",
        on_crash="destroy",
        devices=Devices(
            controllers=(usb_bus,),
            interfaces=interfaces,
            serials=(Serial(log_file=str(console_log_path(spec.work_dir)), append=True),),
            consoles=(Console(),),
            hostdevs=hostdevs,
            memballoon=MemBalloon(model="none"),
        ),
        metadata=OutpostMetadata(
            app_uuid=spec.app_uuid,
            node_uuid=spec.node_uuid,
            image_sha256=spec.image_sha256,
            app_name=spec.name,
        ),
    )


def prepare_domain(spec: WorkloadSpec, accel: str, *, uuid: str = "") -> Domain:
    """Check the image format, unpack the image into the work dir, build the domain."""
    if spec.image_format != KERNEL_BUNDLE:
        raise PermanentError(
            f"app {spec.app_uuid}: image format {spec.image_format!r} is not supported by the "
            f"VM runtime (supported: {KERNEL_BUNDLE})"
        )
    files = extract_kernel_bundle(spec.image_path, spec.work_dir)
    return build_domain(spec, accel, files, uuid=uuid)
