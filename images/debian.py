"""Debian package access: resolve candidates with apt, download .debs (cached, verified), extract.

``apt-cache`` is slow on this kind of machine (no binary package cache: ~1.4 s per call), so a
resolution is remembered in the cache directory together with a fingerprint of the apt lists;
it is asked again only when the lists change (``apt-get update``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import lzma
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from attestation.files import sha256_file
from images.common import ImageBuildError, atomic_write_text

log = logging.getLogger(__name__)

APT_LISTS = Path("/var/lib/apt/lists")
APT_ARCHIVES = Path("/var/cache/apt/archives")
APT_CONFIG_GLOBS = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*", "/etc/apt/preferences*")
_TOOL_PACKAGES = {"apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg", "dpkg-query": "dpkg"}


@dataclass(frozen=True)
class DebPackage:
    """A package version as apt's candidate: where it is in the pool and its expected sha256."""

    name: str
    version: str
    architecture: str
    sha256: str
    size: int

    @property
    def deb_name(self) -> str:
        version = self.version.replace(":", "%3a")
        return f"{self.name}_{version}_{self.architecture}.deb"


def require_tool(tool: str) -> str:
    """Absolute path of a Debian tool, or a clear error naming the package that provides it."""
    found = shutil.which(tool)
    if found is None:
        package = _TOOL_PACKAGES.get(tool, tool)
        raise ImageBuildError(
            f"{tool} not found on PATH: install it with `apt-get install {package}`"
        )
    return found


def _run(args: list[str], what: str, cwd: Path | None = None, timeout: float = 600) -> str:
    command = [require_tool(args[0]), *args[1:]]
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"{what}: `{' '.join(args)}` timed out after {timeout} s") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise ImageBuildError(f"{what}: `{' '.join(args)}` failed ({done.returncode}): {detail}")
    return done.stdout


def _stanzas(text: str) -> list[dict[str, str]]:
    records = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            records.append(fields)
    return records


def apt_show(names: list[str]) -> dict[str, dict[str, str]]:
    """Candidate records of the named packages (one apt-cache call)."""
    hint = "are the apt lists present? run `apt-get update`"
    text = _run(["apt-cache", "show", "--no-all-versions", *names], f"apt-cache show ({hint})")
    records = {record["Package"]: record for record in _stanzas(text) if "Package" in record}
    missing = [name for name in names if name not in records]
    if missing:
        raise ImageBuildError(f"apt has no candidate for {', '.join(missing)} ({hint})")
    return records


def _package(record: dict[str, str]) -> DebPackage:
    return DebPackage(
        name=record["Package"],
        version=record["Version"],
        architecture=record["Architecture"],
        sha256=record["SHA256"],
        size=int(record["Size"]),
    )


def lists_fingerprint() -> str:
    paths = [p for p in APT_LISTS.iterdir() if p.is_file() and p.name != "lock"]
    for pattern in APT_CONFIG_GLOBS:
        paths.extend(Path("/").glob(pattern.lstrip("/")))
    digest = hashlib.sha256()
    for path in sorted(paths):
        info = path.stat()
        digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def resolve_dependency(meta: str, prefix: str, cache_dir: Path) -> DebPackage:
    """The package ``meta`` depends on whose name starts with ``prefix`` (apt's candidate).

    E.g. ``linux-image-cloud-amd64`` → ``linux-image-6.1.0-N-cloud-amd64``, the newest ABI.
    """
    memo = cache_dir / "apt-resolution.json"
    fingerprint = lists_fingerprint()
    key = f"{meta} {prefix}"
    try:
        remembered = json.loads(memo.read_text())
    except (OSError, ValueError):
        remembered = {}
    if remembered.get("fingerprint") == fingerprint and key in remembered.get("resolved", {}):
        return DebPackage(**remembered["resolved"][key])
    log.info("resolving %s with apt-cache", meta)
    depends = apt_show([meta])[meta].get("Depends", "")
    names = [part.strip().split()[0] for part in depends.replace("|", ",").split(",") if part]
    target = next((name for name in names if name.startswith(prefix)), None)
    if target is None:
        raise ImageBuildError(f"{meta} does not depend on a {prefix}* package (Depends: {depends})")
    package = _package(apt_show([target])[target])
    resolved = (
        remembered.get("resolved", {}) if remembered.get("fingerprint") == fingerprint else {}
    )
    resolved[key] = asdict(package)
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        memo, json.dumps({"fingerprint": fingerprint, "resolved": resolved}, indent=1)
    )
    return package


def candidate(name: str) -> DebPackage:
    """apt's candidate version of one package."""
    return _package(apt_show([name])[name])


def download(package: DebPackage, cache_dir: Path) -> Path:
    """The package's .deb in ``cache_dir``, downloaded with ``apt-get download`` if needed."""
    target = cache_dir / package.deb_name
    for existing in (target, APT_ARCHIVES / package.deb_name):
        if not existing.is_file() or existing.stat().st_size != package.size:
            continue
        if sha256_file(existing) == package.sha256:
            if existing != target:
                shutil.copyfile(existing, target)
            return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s %s (%.1f MB)", package.name, package.version, package.size / 1e6)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        spec = f"{package.name}={package.version}"
        _run(
            ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", spec],
            f"downloading {spec} (network or stale lists? try `apt-get update`)",
            cwd=Path(tmp),
        )
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise ImageBuildError(f"apt-get download {spec} left {len(debs)} .deb files")
        actual = sha256_file(debs[0])
        if actual != package.sha256:
            raise ImageBuildError(
                f"{debs[0].name}: sha256 {actual} does not match apt's {package.sha256}"
            )
        debs[0].replace(target)
    return target


def extract(deb: Path, patterns: Iterable[str]) -> dict[str, bytes]:
    """Regular files of ``deb`` whose path (without ``./``) matches a glob, streamed via dpkg-deb.

    ``.ko.xz`` modules are decompressed (and stored under the ``.ko`` name).
    """
    wanted = tuple(patterns)
    found: dict[str, bytes] = {}
    command = [require_tool("dpkg-deb"), "--fsys-tarfile", str(deb)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if not member.isfile() or not any(fnmatch.fnmatch(name, p) for p in wanted):
                    continue
                handle = archive.extractfile(member)
                assert handle is not None
                data = handle.read()
                if name.endswith(".ko.xz"):
                    name, data = name.removesuffix(".xz"), lzma.decompress(data)
                found[name] = data
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise ImageBuildError(f"dpkg-deb --fsys-tarfile {deb} failed: {stderr.strip()}")
    return found


def installed_version(name: str) -> str | None:
    """Version of an installed package, or None when it is not installed."""
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query is None:
        return None
    done = subprocess.run(
        [dpkg_query, "-W", "-f", "${db:Status-Abbrev}\t${Version}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    status, _, version = done.stdout.partition("\t")
    return version if done.returncode == 0 and status.startswith("ii") else None
