"""Build ``outpost-node.qcow2``: a bootable Debian 12 Outpost node (opt-in, minutes).

    python -m images.node_image [--out build/node] [--force] [--variant node|vagrant] [-v]
    (or ``python -m images.build --with-node-image``)

Root file system: :mod:`images.node_rootfs` (Debian packages, the agent from the working tree,
systemd units). Disk: MBR + FAT ``/boot`` with SYSLINUX + ext4 root (:mod:`images.disk`),
zstd-compressed qcow2. Cached and incremental: ``stamp.json`` in the output directory records
the inputs (package list and apt lists, recipe modules, the agent's sources, pinned wheel
versions, the Vagrant key); an unchanged image is not rebuilt; the Debian stage (kept in
``<out>/work``) is redone only when the package list or apt lists change; .debs and wheels are
cached in ``<out>/cache``.

Per node, a small FAT config disk (:func:`config_disk`, label
:data:`images.node_rootfs.CONFIG_LABEL`) carries ``agent.yaml`` and the onboarding bundle, so
one base image (with a qcow2 overlay per node) serves every node. :func:`agent_settings`
turns the agent's port lockdown on (firewall, USB, console, sshd only for debug SSH).

Variant ``vagrant`` (``outpost-node-vagrant.qcow2``, for :mod:`images.vagrant_box` only)
adds the ``vagrant`` user with Vagrant's insecure key and an enabled sshd: lab-only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from attestation.files import sha256_file
from images import debian, debian_rootfs, disk, node_rootfs, stamp
from images.build_lock import build_lock
from images.common import ImageBuildError, configure_cli_logging

__all__ = [
    "DEFAULT_OUT_DIR",
    "IMAGE_FILE",
    "agent_settings",
    "build_node_image",
    "config_disk",
    "node_ports",
]

log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = debian_rootfs.REPO_ROOT / "build" / "node"
IMAGE_FILE = "outpost-node.qcow2"
STAMP_KEY = "node"
IMAGE_FILES = {"node": IMAGE_FILE, "vagrant": "outpost-node-vagrant.qcow2"}
STAMP_KEYS = {"node": STAMP_KEY, "vagrant": "node-vagrant"}
NETWORK_STATE_DIR = "/var/lib/outpost/network"
SOURCES = ("node_image.py", "node_rootfs.py", "disk.py", "debian_rootfs.py", "common.py")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _inputs(variant: str) -> dict[str, Any]:
    base = {
        "packages": list(node_rootfs.PACKAGES),
        "suite": debian_rootfs.SUITE,
        "mirror": debian_rootfs.MIRROR,
        "apt_lists": debian.lists_fingerprint(),
    }
    inputs = {
        "image": STAMP_KEYS[variant],
        "base": _digest(base),
        "recipe": stamp.source_hash(SOURCES),
        "agent": debian_rootfs.tree_hash(node_rootfs.agent_sources()),
        "wheels": _digest(debian_rootfs.constraints()),
    }
    if variant == "vagrant":
        inputs["vagrant_key"] = hashlib.sha256(node_rootfs.VAGRANT_KEY.read_bytes()).hexdigest()
    return inputs


def _boot_files(root: Path) -> disk.BootFiles:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if len(kernels) != 1 or len(initrds) != 1:
        raise ImageBuildError(f"expected one kernel and initrd in /boot: {kernels} {initrds}")
    return disk.BootFiles(kernels[0], initrds[0], node_rootfs.CMDLINE)


def _build(work: Path, cache: Path, out: Path, base_key: str, variant: str) -> None:
    root = debian_rootfs.debootstrap(work / "node-rootfs", node_rootfs.PACKAGES, cache, base_key)
    node_rootfs.fetch_wheels(cache)
    node_rootfs.install_python(root, cache)
    node_rootfs.install_agent(root)
    node_rootfs.configure(root, variant)
    raw = disk.bootable_disk(
        root, _boot_files(root), work / "outpost-node.raw", work / "node-disk", free_mib=1024
    )
    try:
        disk.to_qcow2(raw, out, compress=True)
    finally:
        raw.unlink(missing_ok=True)


def build_node_image(
    out_dir: Path = DEFAULT_OUT_DIR, force: bool = False, variant: str = "node"
) -> Path:
    """Build (or reuse, when its stamp is fresh) the node image; returns its path."""
    if variant not in node_rootfs.VARIANTS:
        raise ImageBuildError(f"unknown node image variant {variant!r}")
    out_dir = Path(out_dir).absolute()
    path = out_dir / IMAGE_FILES[variant]
    key = STAMP_KEYS[variant]
    with build_lock(out_dir):
        records = stamp.load(out_dir)
        inputs = _inputs(variant)
        if not force and stamp.is_fresh(records.get(key), inputs, path):
            log.info("node image: up to date (%s)", path)
            return path
        started = time.monotonic()
        _build(out_dir / "work", out_dir / "cache", path, inputs["base"], variant)
        size = path.stat().st_size
        seconds = round(time.monotonic() - started, 1)
        log.info("node image: wrote %s (%.0f MiB) in %.0f s", path, size / 2**20, seconds)
        records[key] = {
            "inputs": inputs,
            "sha256": sha256_file(path),
            "size": size,
            "seconds": seconds,
        }
        stamp.save(out_dir, records)
    return path


def node_ports() -> dict[str, Any]:
    """The port lockdown of a node booted from this image: the agent's firewall (input and
    forward policy drop), USB authorisation, console gettys and sshd all off unless the
    config opens them; debug SSH keys go to root's authorized_keys."""
    return {
        "network": {"state_dir": NETWORK_STATE_DIR},
        "usb_sysfs_root": "/sys",
        "console_root": "/",
        "console_ttys": ["ttyS0", "tty1"],
        "ssh_authorized_keys": "/root/.ssh/authorized_keys",
        "ssh_service": node_rootfs.SSH_UNIT,
    }


def agent_settings(serial: str, hypervisor: str = "tcg", **extra: Any) -> dict[str, Any]:
    """The agent settings of a node booted from this image (its vTPM, its own libvirt and
    podman, the port lockdown on); ``extra`` adds or overrides settings (e.g.
    ``config_interval_s``; ``ports=None`` turns the lockdown off, for a lab only)."""
    return {
        "state_dir": node_rootfs.STATE_DIR,
        "bundle_dir": node_rootfs.BUNDLE_DIR,
        "serial": serial,
        "libvirt_uri": "qemu:///system",
        "hypervisor": hypervisor,
        "tpm": "device:/dev/tpmrm0",
        "reboot_command": ["/usr/bin/systemctl", "reboot"],
        "ports": node_ports(),
        **extra,
    }


def config_disk(path: Path, settings: dict[str, Any], bundle: dict[str, bytes]) -> Path:
    """A FAT config disk for one node: ``agent.yaml`` (``settings``) and the onboarding
    bundle's files (``controller.json``, ``root-ca.pem``, ``onboarding.pem``/``.key``)."""
    unknown = set(bundle) - set(node_rootfs.CONFIG_FILES)
    if unknown:
        raise ImageBuildError(f"config disk: unexpected bundle files {sorted(unknown)}")
    files: dict[str, bytes | Path] = {
        "agent.yaml": yaml.safe_dump(settings, sort_keys=True).encode(),
        **bundle,
    }
    return disk.fat_image(path, files, node_rootfs.CONFIG_LABEL, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m images.node_image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--variant",
        choices=node_rootfs.VARIANTS,
        default="node",
        help="vagrant: adds the vagrant user, its insecure key and sshd (lab box only)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    configure_cli_logging(args.verbose)
    started = time.monotonic()
    try:
        path = build_node_image(args.out, args.force, args.variant)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{path} ({path.stat().st_size} B, {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
