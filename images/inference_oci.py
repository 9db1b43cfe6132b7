"""Recipe of ``inference-oci.tar``: the same app as an OCI archive, to run as a container.

Root file system: minbase Debian with python3 only (no kernel, no systemd), the app and
its wheels (:mod:`images.inference_rootfs`), the default config in ``/etc/outpost``. One
layer; entrypoint ``python3 -m inference_vm run``, default command ``--config
/etc/outpost/inference.yaml --user-data /run/outpost/user-data`` (an Outpost container
app's user-data, when it has one). ``podman load`` names it ``localhost/outpost/inference:1``.
"""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path

from images import debian_rootfs, inference_rootfs, oci
from images.inference_vm_image import APP_PORT, CONFIG_NAME, DEFAULT_CONFIG

log = logging.getLogger(__name__)

PACKAGES = ("python3",)
REF_NAME = "outpost/inference:1"
SOURCES = (
    "inference_oci.py",
    "inference_rootfs.py",
    "debian_rootfs.py",
    "oci.py",
    "fstree.py",
    "common.py",
)
CONFIG = oci.ImageConfig(
    entrypoint=("/usr/bin/python3", "-m", "inference_vm", "run"),
    cmd=("--config", f"/etc/outpost/{CONFIG_NAME}", "--user-data", "/run/outpost/user-data"),
    env=(
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"PYTHONPATH={inference_rootfs.PYTHONPATH}",
        "PYTHONDONTWRITEBYTECODE=1",
    ),
    labels={"org.opencontainers.image.title": "Outpost inference app", "port": str(APP_PORT)},
)
_SKIP = ("dev/", "proc/", "sys/", "run/", "tmp/", "var/cache/apt/", "var/lib/apt/lists/")


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = info.name.removeprefix("./")
    if any(name.startswith(prefix) for prefix in _SKIP) or name.endswith(".outpost-base.json"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def layer_tar(root: Path) -> bytes:
    """The root directory as one uncompressed layer (sorted, root-owned, dated at the epoch)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for child in sorted(root.iterdir()):
            archive.add(child, arcname=child.name, filter=_normalise)
    return buffer.getvalue()


def build_archive(work: Path, cache: Path, base_key: str) -> bytes:
    """The oci-archive bytes; the Debian stage is reused while ``base_key`` is unchanged."""
    root = debian_rootfs.debootstrap(work / "oci-rootfs", PACKAGES, cache, base_key)
    inference_rootfs.install_python(root, cache)
    inference_rootfs.install_app(root)
    config = root / "etc/outpost" / CONFIG_NAME
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(DEFAULT_CONFIG)
    layer = layer_tar(root)
    log.info("inference-oci: layer %.0f MiB uncompressed", len(layer) / 2**20)
    return oci.build_oci_archive(layer, CONFIG, REF_NAME, created_by="outpost images.inference")
