"""The agent release bundle: one format, written by ``outpost agent-release build``, checked
by the controller on upload and unpacked by the agent's self-update.

A bundle is a reproducible gzip tarball (sorted, owner 0, mtime 0) of the pure-Python
packages ``node_agent``, ``attestation`` and ``protocol``: regular files and directories
only, no absolute paths, no ``..``, bounded in members and bytes.  The version it
declares is the line ``AGENT_VERSION = "…"`` of ``node_agent/self_update/version.py``.

    build(version, out, source=None, replace=None)   write a bundle
    unpack(tarball, dest)                            extract safely (BundleError otherwise)
    bundle_version(root)                             the version an unpacked bundle declares
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import re
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from pydantic import TypeAdapter, ValidationError

from protocol.desired_state import AgentVersion

__all__ = [
    "MAX_MEMBERS",
    "MAX_UNPACKED_BYTES",
    "PACKAGES",
    "VERSION_FILE",
    "BundleError",
    "build",
    "bundle_version",
    "unpack",
]

PACKAGES = ("node_agent", "attestation", "protocol")
VERSION_FILE = "node_agent/self_update/version.py"
MAX_MEMBERS = 4096
MAX_UNPACKED_BYTES = 128 * 1024**2
_VERSION = TypeAdapter(AgentVersion)
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


def _source_root() -> Path:
    spec = importlib.util.find_spec("node_agent")
    if spec is None or not spec.submodule_search_locations:
        raise BundleError("the node_agent package is not installed")
    return Path(next(iter(spec.submodule_search_locations))).parent


def build(
    version: str,
    out: Path,
    source: Path | None = None,
    replace: Mapping[str, str] | None = None,
) -> Path:
    """Write the release tarball of ``version`` from ``source`` (default: the installed
    packages); ``replace`` maps package-relative paths to new file contents (a hotfix,
    or a deliberately broken build in tests).  Reproducible: sorted, owner 0, mtime 0."""
    try:
        _VERSION.validate_python(version)
    except ValidationError as exc:
        raise BundleError(f"version {version!r} is not MAJOR.MINOR.PATCH[-tag]") from exc
    root = source or _source_root()
    files: dict[str, bytes] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    if VERSION_FILE not in files:
        raise BundleError(f"{root / VERSION_FILE} is missing")
    files[VERSION_FILE] = (
        '"""The running agent\'s version; a release bundle carries its own copy of this'
        f' file."""\n\nAGENT_VERSION = "{version}"\n'
    ).encode()
    for rel, text in (replace or {}).items():
        if PurePosixPath(rel).parts[0] not in PACKAGES:
            raise BundleError(f"{rel}: not in {PACKAGES}")
        files[rel] = text.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(files[rel]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[rel]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh, gzip.GzipFile("", "wb", fileobj=fh, mtime=0) as gz:
        gz.write(buf.getvalue())
    return out
