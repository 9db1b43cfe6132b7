"""Recipe of ``inference-vm.qcow2``: Debian + systemd + the inference app as a boot-time service.

Root file system (:mod:`images.inference_rootfs`): minbase, systemd, udev, the Debian cloud
kernel with its initramfs, python3, the app and its wheels. The guest starts
``outpost-config.service`` (copies ``user-data``/``meta-data`` from an Outpost NoCloud seed
labelled ``cidata`` to ``/run/outpost/``, and ``inference.yaml`` from a config disk labelled
:data:`CONFIG_LABEL` — FAT or ISO — else the image default) and then
``outpost-inference.service`` (the user-data merged over ``inference.yaml``; metrics
reported to the metadata service, 169.254.169.254, when the VM is on an app network;
``python3 -m inference_vm run``, a dynamic user in group
``video``, restarted on failure, output on the serial console). Networking: systemd-networkd,
DHCP on every wired NIC. Ports off: no getty on any console, no SSH server in the image.
Disk: MBR + FAT ``/boot`` with SYSLINUX + ext4 root (:mod:`images.disk`), zstd-compressed qcow2.

Variant ``gpu`` (``inference-vm-gpu.qcow2``): Debian's generic kernel (``linux-image-amd64``:
the i915 driver, which the cloud kernel lacks), the GPU firmware (``firmware-misc-nonfree``,
from ``non-free-firmware``), ``intel-opencl-icd`` + the OpenCL loader, so OpenVINO's ``GPU``
device works when an Intel GPU is passed through; without one the app falls back to the CPU
and logs why (:mod:`inference_vm.devices`).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from images import debian_rootfs, disk, inference_rootfs
from images.common import ImageBuildError

log = logging.getLogger(__name__)

PACKAGES = ("systemd-sysv", "udev", "linux-image-cloud-amd64", "python3", "iproute2", "kmod")
GPU_PACKAGES = (
    *(p for p in PACKAGES if p != "linux-image-cloud-amd64"),
    "linux-image-amd64",
    "firmware-misc-nonfree",
    "intel-opencl-icd",
    "ocl-icd-libopencl1",
)
GPU_COMPONENTS = ("main", "non-free-firmware")
VARIANTS = ("cpu", "gpu")
SEED_LABEL = "cidata"
USER_DATA = "/run/outpost/user-data"
METADATA_REPORT_URL = "http://169.254.169.254/report"
CONFIG_LABEL = "OUTPOSTCFG"
CONFIG_NAME = "inference.yaml"
APP_PORT = 8080
READY_MARKER = "inference_vm.app: serving on"
CMDLINE = "root=LABEL=outpost-root ro console=ttyS0 net.ifnames=0 quiet systemd.show_status=1"
SOURCES = (
    "inference_vm_image.py",
    "inference_rootfs.py",
    "debian_rootfs.py",
    "disk.py",
    "common.py",
)

DEFAULT_CONFIG = f"""# Outpost inference app: default configuration of the VM image.
# A config disk labelled {CONFIG_LABEL} with {CONFIG_NAME} replaces this file at boot.
source: {{url: /dev/video0}}
detector: {{kind: openvino, mode: face, device: AUTO}}
server: {{host: 0.0.0.0, port: {APP_PORT}}}
report: {{url: "{METADATA_REPORT_URL}", interval_s: 5}}
"""

CONFIG_SCRIPT = f"""#!/bin/sh
# Install the app's configuration: the Outpost NoCloud seed's user-data ({SEED_LABEL}), and
# inference.yaml from the config disk ({CONFIG_LABEL}) or the image default.
set -u
mkdir -p /run/outpost
seed=$(blkid -L {SEED_LABEL} 2>/dev/null || true)
if [ -n "$seed" ]; then
    mkdir -p /run/outpost/seed
    if mount -o ro "$seed" /run/outpost/seed; then
        for f in user-data meta-data; do
            [ -f /run/outpost/seed/$f ] && install -m 0644 /run/outpost/seed/$f /run/outpost/$f
        done
        umount /run/outpost/seed
        echo "outpost-config: user-data from the NoCloud seed $seed"
    fi
fi
dev=$(blkid -L {CONFIG_LABEL} 2>/dev/null || true)
if [ -n "$dev" ]; then
    mkdir -p /run/outpost/config-disk
    if mount -o ro "$dev" /run/outpost/config-disk && \\
        [ -f /run/outpost/config-disk/{CONFIG_NAME} ]; then
        cp /run/outpost/config-disk/{CONFIG_NAME} /run/outpost/{CONFIG_NAME}
        echo "outpost-config: configuration from $dev"
        exit 0
    fi
    echo "outpost-config: $dev has no {CONFIG_NAME}" >&2
fi
cp /etc/outpost/{CONFIG_NAME} /run/outpost/{CONFIG_NAME}
echo "outpost-config: no config disk, image default"
"""

CONFIG_UNIT = """[Unit]
Description=Outpost: install the inference app's configuration (config disk or default)
After=local-fs.target systemd-udev-settle.service
Before=outpost-inference.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/outpost-config
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""

APP_UNIT = f"""[Unit]
Description=Outpost inference app (faces/eyes, MJPEG page and metrics on :{APP_PORT})
After=network.target outpost-config.service
Requires=outpost-config.service

[Service]
Environment=PYTHONPATH={inference_rootfs.PYTHONPATH} PYTHONDONTWRITEBYTECODE=1
Environment=HOME=/run/outpost-inference
RuntimeDirectory=outpost-inference
ExecStart=/usr/bin/python3 -m inference_vm run --config /run/outpost/{CONFIG_NAME} \
    --user-data {USER_DATA}
DynamicUser=yes
SupplementaryGroups=@GROUPS@
Restart=always
RestartSec=2
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
"""

MASKED = (
    "getty.target",  # no login on any console (ports off)
    "serial-getty@ttyS0.service",
    "console-getty.service",
    "autovt@.service",
    "systemd-networkd-wait-online.service",  # the app does not wait for a network
    "apt-daily.timer",  # an appliance: updates come as a new image
    "apt-daily-upgrade.timer",
)
NETWORK = "[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _systemctl(root: Path, *args: str) -> None:
    done = subprocess.run(["systemctl", f"--root={root}", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageBuildError(f"systemctl {' '.join(args)}: {done.stderr.strip()}")


def configure(root: Path) -> None:
    """Host name, fstab, network, the two services; no gettys (ports off)."""
    _write(root / "etc/hostname", "outpost-inference\n")
    _write(root / "etc/hosts", "127.0.0.1 localhost\n127.0.1.1 outpost-inference\n")
    _write(root / "etc/fstab", "LABEL=outpost-root / ext4 defaults,noatime 0 1\n")
    _write(root / "etc/systemd/network/20-wired.network", NETWORK)
    _write(root / "etc/outpost" / CONFIG_NAME, DEFAULT_CONFIG)
    _write(root / "usr/local/sbin/outpost-config", CONFIG_SCRIPT, 0o755)
    groups = (root / "etc/group").read_text()
    present = [g for g in ("video", "render") if f"\n{g}:" in f"\n{groups}"]
    unit = APP_UNIT.replace("@GROUPS@", " ".join(present))
    _write(root / "etc/systemd/system/outpost-config.service", CONFIG_UNIT)
    _write(root / "etc/systemd/system/outpost-inference.service", unit)
    _systemctl(root, "enable", "systemd-networkd.service", "outpost-config.service")
    _systemctl(root, "enable", "outpost-inference.service")
    _systemctl(root, "mask", *MASKED)
    (root / "etc/machine-id").write_text("")  # a fresh id on every first boot


def boot_files(root: Path) -> disk.BootFiles:
    """The installed kernel and its initramfs (exactly one of each)."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if len(kernels) != 1 or len(initrds) != 1:
        raise ImageBuildError(f"expected one kernel and initrd in /boot: {kernels} {initrds}")
    return disk.BootFiles(kernels[0], initrds[0], CMDLINE)


def build_qcow2(
    work: Path,
    cache: Path,
    out: Path,
    base_key: str,
    compress: bool = True,
    variant: str = "cpu",
) -> Path:
    """Build ``out`` (qcow2); the Debian stage is reused while ``base_key`` is unchanged."""
    if variant not in VARIANTS:
        raise ImageBuildError(f"unknown inference VM variant {variant!r} (one of {VARIANTS})")
    gpu = variant == "gpu"
    root = debian_rootfs.debootstrap(
        work / ("vm-gpu-rootfs" if gpu else "vm-rootfs"),
        GPU_PACKAGES if gpu else PACKAGES,
        cache,
        base_key,
        GPU_COMPONENTS if gpu else ("main",),
    )
    inference_rootfs.install_python(root, cache)
    inference_rootfs.install_app(root)
    configure(root)
    name = f"inference-vm-{variant}"
    raw = disk.bootable_disk(root, boot_files(root), work / f"{name}.raw", work / f"{name}-disk")
    try:
        return disk.to_qcow2(raw, out, compress=compress)
    finally:
        raw.unlink(missing_ok=True)


def config_disk(path: Path, config_yaml: str, extra: dict[str, Path] | None = None) -> Path:
    """A FAT config disk (label :data:`CONFIG_LABEL`) with ``inference.yaml`` and ``extra``
    files (e.g. a test video); the guest mounts it read-only at ``/run/outpost/config-disk``.
    """
    files: dict[str, bytes | Path] = {CONFIG_NAME: config_yaml.encode(), **(extra or {})}
    size = sum(len(v) if isinstance(v, bytes) else v.stat().st_size for v in files.values())
    return disk.fat_image(path, files, CONFIG_LABEL, max(2, size // 2**20 + 2))
