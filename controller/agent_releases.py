"""Agent releases: build a bundle, accept an upload, and point a node at a release.

A release is a gzip tarball of the packages ``node_agent``, ``attestation`` and
``protocol`` (pure Python) stored in the controller's datastore like an image (format
``agent-bundle``, name ``agent-<version with dashes>``).  Pointing a node at it writes
an :class:`AgentTarget` into the node's settings (so it reaches the node in its signed
desired state) with a manifest signed by the config-signing key: version, sha256, size
and the code digest the node will measure.  That digest is added to the node's
attestation baseline, so the new version can re-attest (a fleet allowlist must list it).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import re
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation import envelope
from attestation.measurement import code_digest
from controller.actions import update_node
from controller.attestation_store import fleet_policy, trust_of
from controller.datastore import store_upload
from controller.db import Image, Node
from controller.desired import image_url
from controller.errors import ApiError, field_error
from controller.ops.bodies import Body
from controller.ops.common import audit, find_node, image_json, parse, svc
from protocol.desired_state import (
    MAX_AGENT_BUNDLE_BYTES,
    AgentManifest,
    AgentTarget,
    AgentVersion,
    Sha256Hex,
)

__all__ = [
    "FORMAT",
    "PACKAGES",
    "NodeReleaseBody",
    "ReleaseQuery",
    "build_bundle",
    "inspect_bundle",
    "list_releases",
    "release_name",
    "set_node_release",
    "upload_release",
]

FORMAT = "agent-bundle"
PACKAGES = ("node_agent", "attestation", "protocol")
VERSION_FILE = "node_agent/self_update/version.py"
MAX_MEMBERS = 4096
MAX_UNPACKED_BYTES = 128 * 1024**2
_VERSION = TypeAdapter(AgentVersion)
_VERSION_LINE = re.compile(r'^AGENT_VERSION = "([^"\n]{1,64})"$', re.M)


class ReleaseQuery(Body):
    version: AgentVersion
    sha256: Sha256Hex


class NodeReleaseBody(Body):
    version: AgentVersion | None = Field(default=None)
    """The release the node should run; null clears the target (the node keeps its version)."""


class BundleInvalid(Exception):
    pass


def release_name(version: str) -> str:
    name = "agent-" + version.replace(".", "-")
    if len(name) > 63:
        raise field_error("version", "too long for a release name (at most 57 characters)")
    return name


# -- build ----------------------------------------------------------------------
def _source_root() -> Path:
    spec = importlib.util.find_spec("node_agent")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the node_agent package is not installed")
    return Path(next(iter(spec.submodule_search_locations))).parent


def build_bundle(
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
        raise ValueError(f"version {version!r} is not MAJOR.MINOR.PATCH[-tag]") from exc
    root = source or _source_root()
    files: dict[str, bytes] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    if VERSION_FILE not in files:
        raise FileNotFoundError(f"{root / VERSION_FILE} is missing")
    files[VERSION_FILE] = (
        '"""The running agent\'s version; a release bundle carries its own copy of this'
        f' file."""\n\nAGENT_VERSION = "{version}"\n'
    ).encode()
    for rel, text in (replace or {}).items():
        if PurePosixPath(rel).parts[0] not in PACKAGES:
            raise ValueError(f"{rel}: not in {PACKAGES}")
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


# -- inspect --------------------------------------------------------------------
def inspect_bundle(tarball: Path) -> tuple[str, str]:
    """(declared version, code digest) of a bundle; raises BundleInvalid."""
    with tempfile.TemporaryDirectory(prefix="outpost-agent-bundle-") as tmp:
        dest = Path(tmp)
        total = 0
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                for count, member in enumerate(archive, start=1):
                    rel = PurePosixPath(member.name)
                    if count > MAX_MEMBERS:
                        raise BundleInvalid(f"more than {MAX_MEMBERS} members")
                    if rel.is_absolute() or ".." in rel.parts or rel.parts[0] not in PACKAGES:
                        raise BundleInvalid(f"member {member.name!r}: path not allowed")
                    if member.isdir():
                        continue
                    if not member.isfile():
                        raise BundleInvalid(f"member {member.name!r}: not a regular file")
                    total += member.size
                    if total > MAX_UNPACKED_BYTES:
                        raise BundleInvalid(f"unpacks to more than {MAX_UNPACKED_BYTES} bytes")
                    target = dest.joinpath(*rel.parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = archive.extractfile(member)
                    assert source is not None
                    target.write_bytes(source.read())
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleInvalid(f"not a readable gzip tarball: {exc}") from exc
        missing = [p for p in PACKAGES if not (dest / p / "__init__.py").is_file()]
        if missing:
            raise BundleInvalid(f"missing packages: {', '.join(missing)}")
        try:
            found = _VERSION_LINE.search((dest / VERSION_FILE).read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleInvalid(f"cannot read {VERSION_FILE}: {exc}") from exc
        if found is None:
            raise BundleInvalid(f"{VERSION_FILE} does not declare AGENT_VERSION")
        return found.group(1), code_digest(dest / p for p in PACKAGES)


# -- operator actions -------------------------------------------------------------
def _release(s: Session, version: str) -> Image:
    image = s.scalar(
        select(Image).where(Image.name == release_name(version), Image.format == FORMAT)
    )
    if image is None:
        raise ApiError(404, "not_found", f"no agent release {version!r}")
    return image


def release_json(image: Image, version: str, digest: str | None = None) -> dict[str, Any]:
    out = {"version": version, **image_json(image)}
    if digest is not None:
        out["code_digest"] = digest
    return out


def upload_release(data: dict[str, Any], stream: BinaryIO) -> dict[str, Any]:
    """``POST /agent-releases?version=&sha256=``: store and check a release bundle."""
    services = svc()
    query = parse(ReleaseQuery, data)
    name = release_name(query.version)
    with services.db.transaction() as s:
        if s.scalar(select(Image).where(Image.name == name)) is not None:
            raise ApiError(409, "conflict", f"agent release {query.version} exists")
    root = services.settings.datastore_dir
    size = store_upload(root, stream, query.sha256, MAX_AGENT_BUNDLE_BYTES)
    blob = root / "sha256" / query.sha256
    try:
        declared, digest = inspect_bundle(blob)
        if declared != query.version:
            raise BundleInvalid(f"the bundle declares version {declared}, not {query.version}")
    except BundleInvalid as exc:
        with services.db.transaction() as s:
            if s.scalar(select(Image).where(Image.sha256 == query.sha256)) is None:
                blob.unlink(missing_ok=True)
        raise ApiError(422, "bad_bundle", f"not an agent release: {exc}") from exc
    with services.db.transaction() as s:
        if s.scalar(select(Image).where(Image.name == name)) is not None:
            raise ApiError(409, "conflict", f"agent release {query.version} exists")
        image = Image(name=name, sha256=query.sha256, size=size, format=FORMAT)
        s.add(image)
        out = release_json(image, query.version, digest)
        audit(s, "agent-release.add", query.version, after=out)
        return out


def _version_of(image: Image) -> str:
    head, *rest = image.name.removeprefix("agent-").split("-", 3)
    core = ".".join([head, *rest[:2]])
    return core + ("-" + rest[2].replace("-", ".") if len(rest) > 2 else "")


def list_releases(s: Session) -> list[dict[str, Any]]:
    images = s.scalars(select(Image).where(Image.format == FORMAT).order_by(Image.created_at))
    targets: dict[str, list[str]] = {}
    for node in s.scalars(select(Node).order_by(Node.serial)):
        version = ((node.settings or {}).get("agent") or {}).get("version")
        if version:
            targets.setdefault(version, []).append(node.serial)
    out = []
    for image in images:
        version = _version_of(image)
        out.append({**release_json(image, version), "nodes": targets.get(version, [])})
    return out


def _manifest(image: Image, version: str, digest: str) -> AgentManifest:
    return AgentManifest(
        version=version,
        sha256=image.sha256,
        size=image.size,
        code_digest=digest,
        created=image.created_at.timestamp() if image.created_at else time.time(),
    )


def _allow_in_baseline(s: Session, node: Node, digest: str) -> None:
    """The new version's code digest must pass the node's attestation policy."""
    allowlist = fleet_policy(s).agent_allowlist or []
    if allowlist and digest not in allowlist:
        raise ApiError(
            422,
            "not_allowed",
            f"the fleet agent allowlist does not list this release's code digest {digest};"
            " add it to the trust policy first",
        )
    trust = trust_of(s, node)
    baseline = dict(trust.baseline or {})
    if baseline and digest not in baseline.get("agent", []):
        baseline["agent"] = sorted({*baseline.get("agent", []), digest})
        trust.baseline = baseline


def set_node_release(s: Session, key: str, data: Any) -> dict[str, Any]:
    """``PUT /nodes/<key>/agent-release``: the release the node should run (or none)."""
    body = parse(NodeReleaseBody, data)
    node = find_node(s, key)
    settings = dict(node.settings or {})
    if body.version is None:
        settings.pop("agent", None)
        update_node(s, key, settings=settings)
        return {"serial": node.serial, "agent": None}
    image = _release(s, body.version)
    blob = svc().settings.datastore_dir / "sha256" / image.sha256
    try:
        declared, digest = inspect_bundle(blob)
    except BundleInvalid as exc:
        raise ApiError(409, "bad_bundle", f"release {body.version} is unusable: {exc}") from exc
    if declared != body.version:
        raise ApiError(409, "bad_bundle", f"release blob declares version {declared}")
    manifest = _manifest(image, body.version, digest)
    signed = envelope.seal(manifest.model_dump(mode="json"), svc().pki.signing)
    try:
        target = AgentTarget.model_validate(
            {
                "version": body.version,
                "image": {
                    "sha256": image.sha256,
                    "size": image.size,
                    "url": image_url(svc().settings.public_url, image),
                },
                "manifest": signed,
            }
        )
    except ValidationError as exc:
        raise ApiError(409, "bad_bundle", f"release {body.version}: {exc}") from exc
    _allow_in_baseline(s, node, digest)
    settings["agent"] = target.model_dump(mode="json")
    update_node(s, key, settings=settings)
    audit(s, "node.agent-release", node.serial, version=body.version, code_digest=digest)
    return {"serial": node.serial, "agent": {"version": body.version, "code_digest": digest}}
