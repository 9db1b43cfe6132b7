"""Unpack an agent release tarball safely and check what it holds.

A bundle is a gzip tarball of the pure-Python packages ``node_agent``, ``attestation``
and ``protocol``: regular files and directories only, no absolute paths, no ``..``,
bounded in members and bytes.  Its code digest (attestation.measurement.code_digest,
what the running agent measures into PCR 14) must be the manifest's, and the version
it declares (``node_agent/self_update/version.py``) the manifest's version.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path, PurePosixPath

from attestation.measurement import code_digest

__all__ = [
    "MAX_MEMBERS",
    "MAX_UNPACKED_BYTES",
    "PACKAGES",
    "VERSION_FILE",
    "BundleError",
    "bundle_version",
    "unpack",
]

PACKAGES = ("node_agent", "attestation", "protocol")
VERSION_FILE = "node_agent/self_update/version.py"
MAX_MEMBERS = 4096
MAX_UNPACKED_BYTES = 128 * 1024**2
_VERSION_LINE = re.compile(r'^AGENT_VERSION = "([^"\n]{1,64})"$', re.M)


class BundleError(Exception):
    """The bundle is not an acceptable agent release; nothing was installed."""


def _check_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BundleError(f"bundle member {name!r}: unsafe path")
    if path.parts[0] not in PACKAGES:
        raise BundleError(f"bundle member {name!r}: outside {', '.join(PACKAGES)}")
    return path


def unpack(tarball: Path, dest: Path) -> None:
    """Extract ``tarball`` into the new directory ``dest`` (files fsynced, 0644/0755)."""
    dest.mkdir(mode=0o755)
    total = 0
    try:
        archive = tarfile.open(tarball, "r:gz")  # noqa: SIM115  (closed below)
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"not a gzip tarball: {exc}") from exc
    with archive:
        try:
            for count, member in enumerate(archive, start=1):
                if count > MAX_MEMBERS:
                    raise BundleError(f"more than {MAX_MEMBERS} members")
                rel = _check_name(member.name)
                target = dest.joinpath(*rel.parts)
                if member.isdir():
                    target.mkdir(mode=0o755, parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise BundleError(f"bundle member {member.name!r}: not a regular file")
                total += member.size
                if total > MAX_UNPACKED_BYTES:
                    raise BundleError(f"unpacks to more than {MAX_UNPACKED_BYTES} bytes")
                target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                with source, open(target, "xb") as out:
                    while chunk := source.read(1024 * 1024):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(target, 0o644)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleError(f"cannot unpack: {exc}") from exc
    for package in PACKAGES:
        if not (dest / package / "__init__.py").is_file():
            raise BundleError(f"the bundle has no package {package!r}")


def bundle_version(root: Path) -> str:
    """The version an unpacked bundle declares."""
    try:
        text = (root / VERSION_FILE).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {VERSION_FILE}: {exc}") from exc
    found = _VERSION_LINE.search(text)
    if found is None:
        raise BundleError(f"{VERSION_FILE} does not declare AGENT_VERSION")
    return found.group(1)


def check_unpacked(root: Path, version: str, digest: str) -> None:
    """The unpacked code must be the release the manifest describes."""
    declared = bundle_version(root)
    if declared != version:
        raise BundleError(f"the bundle declares version {declared}, the manifest {version}")
    actual = code_digest(root / p for p in PACKAGES)
    if actual != digest:
        raise BundleError(f"code digest {actual[:16]}… is not the manifest's {digest[:16]}…")
