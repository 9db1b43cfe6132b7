"""The busybox-static binary both images are made of: the installed one, or one from its .deb."""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from images import debian
from images.common import ImageBuildError, atomic_write_bytes, sha256_bytes

log = logging.getLogger(__name__)

PACKAGE = "busybox-static"
INSTALLED_PATH = Path("/bin/busybox")


@dataclass(frozen=True)
class Busybox:
    """A static busybox binary and the Debian version it came from."""

    path: Path
    version: str

    @cached_property
    def data(self) -> bytes:
        return self.path.read_bytes()

    @cached_property
    def sha256(self) -> str:
        return sha256_bytes(self.data)

    def applets(self) -> list[str]:
        """Sorted applet names (``busybox --list``), without ``busybox`` itself."""
        try:
            done = subprocess.run(
                [str(self.path), "--list"], capture_output=True, text=True, check=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ImageBuildError(f"cannot list applets of {self.path}: {exc}") from exc
        return sorted({name for name in done.stdout.split() if name != "busybox"})


def locate(cache_dir: Path) -> Busybox:
    """The installed busybox-static, else the one from its .deb (downloaded into the cache)."""
    installed = debian.installed_version(PACKAGE)
    if installed is not None and INSTALLED_PATH.is_file():
        return Busybox(INSTALLED_PATH, installed)
    package = debian.candidate(PACKAGE)
    target = cache_dir / f"busybox-{package.version.replace(':', '%3a')}"
    if not target.is_file():
        log.info("%s is not installed: taking busybox from its .deb", PACKAGE)
        files = debian.extract(debian.download(package, cache_dir), ["bin/busybox"])
        if "bin/busybox" not in files:
            raise ImageBuildError(f"{package.deb_name} has no bin/busybox")
        atomic_write_bytes(target, files["bin/busybox"], mode=0o755)
    if not os.access(target, os.X_OK):
        raise ImageBuildError(f"{target} is not executable")
    return Busybox(target, package.version)
