"""Build the inference images (opt-in, slow): ``inference-vm.qcow2`` and ``inference-oci.tar``.

    python -m images.inference_build [--out build/inference] [--only vm|oci|vm-gpu] [--force] [-v]

``vm-gpu`` (``inference-vm-gpu.qcow2``: the generic kernel, GPU firmware, intel-opencl-icd) is
built only when asked for (``--only vm-gpu``).

Writes ``manifest.json`` (same format as images.build's) and ``stamp.json`` in the output
directory. An image is rebuilt only when its inputs change: the recipe modules, the app's
sources, the Debian package list and apt lists (the Debian stage, kept in ``work/``, is
redone only when those change) and the pinned wheel versions of the building environment.
Downloads (.debs, wheels) are cached in ``<out>/cache``.
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

from attestation.files import sha256_file
from images import (
    debian,
    debian_rootfs,
    inference_oci,
    inference_rootfs,
    inference_vm_image,
    stamp,
)
from images.build_lock import build_lock
from images.common import ImageBuildError, atomic_write_bytes, configure_cli_logging, sha256_bytes
from images.manifest import ImageArtifact, Manifest, write_manifest

log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = debian_rootfs.REPO_ROOT / "build" / "inference"
VM_FILE, OCI_FILE = "inference-vm.qcow2", "inference-oci.tar"
GPU_VM_FILE = "inference-vm-gpu.qcow2"
ONLY = ("vm", "oci", "vm-gpu")
__all__ = ["DEFAULT_OUT_DIR", "build_inference", "main"]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _inputs(name: str, packages: tuple[str, ...], sources: tuple[str, ...]) -> dict[str, Any]:
    base = {
        "packages": list(packages),
        "suite": debian_rootfs.SUITE,
        "mirror": debian_rootfs.MIRROR,
        "apt_lists": debian.lists_fingerprint(),
    }
    return {
        "image": name,
        "base": _digest(base),
        "recipe": stamp.source_hash(sources),
        "app": debian_rootfs.tree_hash(inference_rootfs.app_sources()),
        "wheels": _digest(debian_rootfs.constraints()),
    }


def _artifact(
    out_dir: Path, name: str, file: str, fmt: str, kind: str, record: Any
) -> ImageArtifact:
    return ImageArtifact(name, file, fmt, record["sha256"], record["size"], kind, out_dir)


def build_inference(
    out_dir: Path = DEFAULT_OUT_DIR, only: str | None = None, force: bool = False
) -> Manifest:
    """Build (or reuse) the inference images in ``out_dir``; returns the manifest written."""
    out_dir = Path(out_dir).absolute()
    cache, work = out_dir / "cache", out_dir / "work"
    wanted = [w for w in ONLY if only == w or (only is None and w != "vm-gpu")]
    with build_lock(out_dir):
        records = stamp.load(out_dir)
        for name in wanted:
            if name == "vm":
                inputs = _inputs(name, inference_vm_image.PACKAGES, inference_vm_image.SOURCES)
                path = out_dir / VM_FILE
            elif name == "vm-gpu":
                packages = (*inference_vm_image.GPU_PACKAGES, *inference_vm_image.GPU_COMPONENTS)
                inputs = _inputs(name, packages, inference_vm_image.SOURCES)
                path = out_dir / GPU_VM_FILE
            else:
                inputs = _inputs(name, inference_oci.PACKAGES, inference_oci.SOURCES)
                path = out_dir / OCI_FILE
            if not force and stamp.is_fresh(records.get(name), inputs, path):
                log.info("%s: up to date (%s)", name, path)
                continue
            started = time.monotonic()
            inference_rootfs.fetch_wheels(cache)
            if name in ("vm", "vm-gpu"):
                variant = "gpu" if name == "vm-gpu" else "cpu"
                inference_vm_image.build_qcow2(work, cache, path, inputs["base"], variant=variant)
                digest = sha256_file(path)
            else:
                data = inference_oci.build_archive(work, cache, inputs["base"])
                atomic_write_bytes(path, data)
                digest = sha256_bytes(data)
            size = path.stat().st_size
            seconds = round(time.monotonic() - started, 1)
            log.info("%s: wrote %s (%.0f MiB) in %.0f s", name, path, size / 2**20, seconds)
            records[name] = {"inputs": inputs, "sha256": digest, "size": size, "seconds": seconds}
            stamp.save(out_dir, records)
        artifacts = []
        if "vm" in records and (out_dir / VM_FILE).is_file():
            artifacts.append(
                _artifact(out_dir, "inference-vm", VM_FILE, "qcow2", "vm", records["vm"])
            )
        if "vm-gpu" in records and (out_dir / GPU_VM_FILE).is_file():
            artifacts.append(
                _artifact(
                    out_dir, "inference-vm-gpu", GPU_VM_FILE, "qcow2", "vm", records["vm-gpu"]
                )
            )
        if "oci" in records and (out_dir / OCI_FILE).is_file():
            artifacts.append(
                _artifact(
                    out_dir, "inference", OCI_FILE, "oci-archive", "container", records["oci"]
                )
            )
        manifest = Manifest(out_dir, tuple(artifacts))
        write_manifest(manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m images.inference_build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--only", choices=ONLY)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    configure_cli_logging(args.verbose)
    started = time.monotonic()
    try:
        manifest = build_inference(args.out, args.only, args.force)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for image in manifest.images:
        print(f"{image.name:13} {image.format:12} {image.size:>11} B  sha256:{image.sha256}")
    print(f"manifest: {manifest.path} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
