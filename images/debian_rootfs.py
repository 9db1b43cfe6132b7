"""A minimal Debian root file system, built from Debian's packages by mmdebstrap, and the
helpers every image recipe that builds one shares.

``debootstrap``: ``mmdebstrap --variant=minbase`` with the given packages, its .debs kept in
``<cache>/debs`` between runs (``sync-in``/``sync-out`` hooks), docs/man/locales left out,
reused while its key matches.  ``constraints``: the building environment's packages pinned
(``name==version``), so wheels installed into an image match what was tested.  ``pip``:
the building interpreter's pip, its error tail raised as :class:`ImageBuildError`.
``tree_hash``: a digest over source files for the stamps.  Used by the inference images
(:mod:`images.inference_rootfs`) and the whole-node image (:mod:`images.node_rootfs`).
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

__all__ = [
    "BASE_STAMP",
    "MIRROR",
    "REPO_ROOT",
    "SECURITY",
    "SUITE",
    "constraints",
    "debootstrap",
    "pip",
    "tree_hash",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
MIRROR = os.environ.get("OUTPOST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY = os.environ.get("OUTPOST_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/locale/*")
BASE_STAMP = ".outpost-base.json"


def _sources(components: tuple[str, ...] = ("main",)) -> list[str]:
    parts = " ".join(components)
    return [
        f"deb {MIRROR} {SUITE} {parts}",
        f"deb {MIRROR} {SUITE}-updates {parts}",
        f"deb {SECURITY} {SUITE}-security {parts}",
    ]


def debootstrap(
    target: Path,
    packages: tuple[str, ...],
    cache: Path,
    key: str,
    components: tuple[str, ...] = ("main",),
) -> Path:
    """``target`` as a fresh minbase Debian with ``packages`` (reused when ``key`` matches);
    ``components``: the archive areas (``non-free-firmware`` for GPU firmware)."""
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
        *_sources(components),
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


def pip(args: list[str], what: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
        raise ImageBuildError(f"{what} failed:\n{tail}")


def tree_hash(paths: list[Path]) -> str:
    """sha256 over file names and contents (recipe and app sources in the stamps)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
