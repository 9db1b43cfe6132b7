"""Build the Outpost test images and ``manifest.json``: orchestration, caching and the CLI.

``python -m images.build [--out build/images] [--force]`` builds, from Debian packages only:

- ``testvm.tar`` (kernel-bundle): Debian cloud kernel + busybox initramfs (see images.testvm);
- ``busybox-oci.tar`` (oci-archive): busybox-static as ``outpost/busybox:1`` (images.container);
- ``testvm-disk.qcow2`` / ``testvm-disk.raw``: testvm as a tiny bootable disk (images.testvm_disk).

Outputs are deterministic. Each image is rebuilt only when its inputs (recipe sources, kernel
package, busybox binary) differ from ``stamp.json``; downloads are cached in ``<out>/cache``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from images import (
    busybox,
    container,
    debian,
    kernel_bundle,
    oci,
    stamp,
    testvm,
    testvm_disk,
    testvm_net,
)
from images.build_lock import build_lock
from images.common import ImageBuildError, atomic_write_bytes, configure_cli_logging, sha256_bytes
from images.manifest import ImageArtifact, Manifest, load_manifest, write_manifest

__all__ = [
    "DEFAULT_OUT_DIR",
    "ImageArtifact",
    "ImageBuildError",
    "Manifest",
    "build_all",
    "load_manifest",
    "main",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "build" / "images"


class _Inputs:
    """Inputs shared by the recipes, looked up lazily (and only once per build)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    @cached_property
    def busybox(self) -> busybox.Busybox:
        return busybox.locate(self.cache_dir)

    @cached_property
    def kernel_package(self) -> debian.DebPackage:
        return testvm.kernel_package(self.cache_dir)


@dataclass(frozen=True)
class _Recipe:
    name: str
    file: str
    format: str
    kind: str
    inputs: Callable[[_Inputs], dict[str, Any]]
    build: Callable[[_Inputs], bytes]


def _testvm_inputs(inputs: _Inputs) -> dict[str, Any]:
    return {
        "recipe": stamp.source_hash(testvm.SOURCES),
        "kernel": asdict(inputs.kernel_package),
        "busybox": {"version": inputs.busybox.version, "sha256": inputs.busybox.sha256},
    }


def _testvm_build(inputs: _Inputs) -> bytes:
    files = testvm.kernel_files(inputs.kernel_package, inputs.cache_dir)
    return testvm.build(files, inputs.busybox)


def _testvm_net_inputs(inputs: _Inputs) -> dict[str, Any]:
    return {**_testvm_inputs(inputs), "recipe": stamp.source_hash(testvm_net.SOURCES)}


def _testvm_net_build(inputs: _Inputs) -> bytes:
    files = testvm_net.kernel_files(inputs.kernel_package, inputs.cache_dir)
    return testvm_net.build_bundle(files, inputs.busybox)


def _testvm_disk_inputs(inputs: _Inputs) -> dict[str, Any]:
    return {**_testvm_inputs(inputs), "recipe": stamp.source_hash(testvm_disk.SOURCES)}


def _testvm_disk_build(
    build: Callable[[testvm.KernelFiles, busybox.Busybox], bytes],
) -> Callable[[_Inputs], bytes]:
    def run(inputs: _Inputs) -> bytes:
        files = testvm_disk.kernel_files(inputs.kernel_package, inputs.cache_dir)
        return build(files, inputs.busybox)

    return run


def _busybox_inputs(inputs: _Inputs) -> dict[str, Any]:
    return {
        "recipe": stamp.source_hash(container.SOURCES),
        "busybox": {"version": inputs.busybox.version, "sha256": inputs.busybox.sha256},
    }


RECIPES = (
    _Recipe("testvm", "testvm.tar", kernel_bundle.FORMAT, "vm", _testvm_inputs, _testvm_build),
    _Recipe(
        testvm_net.NAME,
        testvm_net.FILE,
        kernel_bundle.FORMAT,
        "vm",
        _testvm_net_inputs,
        _testvm_net_build,
    ),
    _Recipe(
        testvm_disk.NAME_QCOW2,
        testvm_disk.FILE_QCOW2,
        "qcow2",
        "vm",
        _testvm_disk_inputs,
        _testvm_disk_build(testvm_disk.build_qcow2),
    ),
    _Recipe(
        testvm_disk.NAME_RAW,
        testvm_disk.FILE_RAW,
        "raw",
        "vm",
        _testvm_disk_inputs,
        _testvm_disk_build(testvm_disk.build_raw),
    ),
    _Recipe(
        "busybox",
        "busybox-oci.tar",
        oci.FORMAT,
        "container",
        _busybox_inputs,
        lambda inputs: container.build(inputs.busybox),
    ),
)


def _build_one(recipe: _Recipe, inputs: _Inputs, out_dir: Path, record: Any, force: bool) -> Any:
    """Build one image unless its stamp says it is fresh; returns its new stamp record."""
    wanted = recipe.inputs(inputs)
    path = out_dir / recipe.file
    if not force and stamp.is_fresh(record, wanted, path):
        log.info("%s: up to date (%s)", recipe.name, path)
        return record
    log.info("%s: building %s ...", recipe.name, recipe.file)
    started = time.monotonic()
    data = recipe.build(inputs)
    atomic_write_bytes(path, data)
    log.info(
        "%s: wrote %s (%.1f MiB) in %.1f s",
        recipe.name,
        path,
        len(data) / 2**20,
        time.monotonic() - started,
    )
    return {"inputs": wanted, "sha256": sha256_bytes(data), "size": len(data)}


def build_all(out_dir: Path = DEFAULT_OUT_DIR, force: bool = False) -> Manifest:
    """Build (or reuse) every image in ``out_dir`` and return the manifest written there."""
    out_dir = Path(out_dir).absolute()
    with build_lock(out_dir):
        inputs = _Inputs(out_dir / "cache")
        records = stamp.load(out_dir)
        new_records: dict[str, Any] = {}
        artifacts = []
        for recipe in RECIPES:
            record = _build_one(recipe, inputs, out_dir, records.get(recipe.name), force)
            new_records[recipe.name] = record
            artifacts.append(
                ImageArtifact(
                    name=recipe.name,
                    file=recipe.file,
                    format=recipe.format,
                    sha256=record["sha256"],
                    size=record["size"],
                    kind=recipe.kind,
                    directory=out_dir,
                )
            )
        manifest = Manifest(out_dir, tuple(artifacts))
        write_manifest(manifest)
        if new_records != records:
            stamp.save(out_dir, new_records)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m images.build",
        description="Build the test images (testvm.tar, busybox-oci.tar) and manifest.json.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help="output directory")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--with-inference",
        action="store_true",
        help="also build the inference VM image and its OCI variant in build/inference (minutes)",
    )
    parser.add_argument(
        "--with-node-image",
        action="store_true",
        help="also build the whole-node image and its Vagrant box in build/node (minutes)",
    )
    args = parser.parse_args(argv)
    configure_cli_logging(args.verbose)
    started = time.monotonic()
    try:
        manifest = build_all(args.out, force=args.force)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for image in manifest.images:
        print(f"{image.name:8} {image.format:14} {image.size:>10} B  sha256:{image.sha256}")
    print(f"manifest: {manifest.path} ({time.monotonic() - started:.2f} s)")
    if args.with_node_image:
        from images import vagrant_box

        status = vagrant_box.main(["--force"] if args.force else [])
        if status != 0:
            return status
    if args.with_inference:
        from images import inference_build

        return inference_build.main(["--force"] if args.force else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
