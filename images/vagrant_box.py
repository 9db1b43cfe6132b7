"""Pack the node image as a vagrant-libvirt box (``outpost-node.box``), so ``vagrant up``
downloads nothing.

    python -m images.vagrant_box [--out build/node] [--force]

The box holds the node image's ``vagrant`` variant (``outpost-node-vagrant.qcow2``): the
production image plus user ``vagrant`` with Vagrant's PUBLIC insecure key, passwordless
sudo and sshd enabled, which ``vagrant up`` needs to provision the machines. That access is
the lab's only: the production node image (``outpost-node.qcow2``) has none of it.

Box format (vagrant-libvirt, metadata v1): an uncompressed tar with ``box.img`` (the qcow2
node image), ``metadata.json`` (``{"provider": "libvirt", "format": "qcow2",
"virtual_size": <GiB>}``) and a ``Vagrantfile`` with the box's provider defaults. Add it with
``vagrant box add --name outpost/node build/node/outpost-node.box``. Cached: rebuilt only when
the node image changes (the box's stamp records the image's sha256).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from attestation.files import sha256_file
from images import node_image, stamp
from images.build_lock import build_lock
from images.common import ImageBuildError

__all__ = ["BOX_FILE", "BOX_NAME", "box_metadata", "build_box"]

log = logging.getLogger(__name__)

BOX_FILE = "outpost-node.box"
BOX_NAME = "outpost/node"
STAMP_KEY = "box"
BOX_VAGRANTFILE = """# Defaults of the outpost/node box (vagrant-libvirt).
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
    libvirt.memory = 1024
    libvirt.cpus = 2
  end
end
"""


def box_metadata(image: Path) -> dict[str, object]:
    """``metadata.json`` for ``image``: virtual_size is its virtual disk size in GiB (up)."""
    done = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "qcow2", str(image)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ImageBuildError(f"qemu-img info {image}: {done.stderr.strip()}")
    virtual = int(json.loads(done.stdout)["virtual-size"])
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": math.ceil(virtual / 2**30)}


def _pack(image: Path, out: Path) -> None:
    tmp = out.with_name(out.name + ".part")
    metadata = json.dumps(box_metadata(image), indent=1).encode()
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("metadata.json", metadata), ("Vagrantfile", BOX_VAGRANTFILE.encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        tar.add(image, arcname="box.img", recursive=False, filter=_normalise)
    tmp.replace(out)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o644
    return info


def build_box(out_dir: Path = node_image.DEFAULT_OUT_DIR, force: bool = False) -> Path:
    """Build (or reuse) the node image's vagrant variant, then the box next to it; returns
    the box's path."""
    out_dir = Path(out_dir).absolute()
    image = node_image.build_node_image(out_dir, force=force, variant="vagrant")
    box = out_dir / BOX_FILE
    with build_lock(out_dir):
        records = stamp.load(out_dir)
        inputs = {
            "image_sha256": records.get(node_image.STAMP_KEYS["vagrant"], {}).get("sha256", ""),
            "recipe": stamp.source_hash(("vagrant_box.py",)),
        }
        if not force and stamp.is_fresh(records.get(STAMP_KEY), inputs, box):
            log.info("box: up to date (%s)", box)
            return box
        started = time.monotonic()
        _pack(image, box)
        records[STAMP_KEY] = {
            "inputs": inputs,
            "sha256": sha256_file(box),
            "size": box.stat().st_size,
            "seconds": round(time.monotonic() - started, 1),
        }
        stamp.save(out_dir, records)
        log.info("box: wrote %s", box)
    return box


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images.vagrant_box", description=__doc__)
    parser.add_argument("--out", type=Path, default=node_image.DEFAULT_OUT_DIR)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s images: %(message)s")
    try:
        box = build_box(args.out, args.force)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{box} ({box.stat().st_size} B); add it: vagrant box add --name {BOX_NAME} {box}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
