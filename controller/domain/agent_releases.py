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

import tempfile
import time
from pathlib import Path
from typing import IO, Any

from pydantic import Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation import envelope
from attestation.measurement import code_digest
from controller.domain.common import Body, parse
from controller.domain.desired import image_url
from controller.domain.nodes import update_node
from controller.domain.views import image_json
from controller.errors import ApiError, field_error
from controller.services import Services
from controller.store.audit import audit
from controller.store.blobs import blob_path, store_upload
from controller.store.lookup import find_node
from controller.store.models import Image, Node
from controller.trust.state import fleet_policy, trust_of
from protocol import agent_bundle
from protocol.agent_bundle import BundleError
from protocol.desired_state import (
    MAX_AGENT_BUNDLE_BYTES,
    AgentManifest,
    AgentTarget,
    AgentVersion,
    Sha256Hex,
)

__all__ = [
    "FORMAT",
    "NodeReleaseBody",
    "ReleaseQuery",
    "inspect_bundle",
    "list_releases",
    "release_name",
    "set_node_release",
    "upload_release",
]

FORMAT = "agent-bundle"


class ReleaseQuery(Body):
    version: AgentVersion
    sha256: Sha256Hex


class NodeReleaseBody(Body):
    version: AgentVersion | None = Field(default=None)
    """The release the node should run; null clears the target (the node keeps its version)."""


def release_name(version: str) -> str:
    name = "agent-" + version.replace(".", "-")
    if len(name) > 63:
        raise field_error("version", "too long for a release name (at most 57 characters)")
    return name


# -- inspect --------------------------------------------------------------------
def inspect_bundle(tarball: Path) -> tuple[str, str]:
    """(declared version, code digest) of a bundle; raises BundleError."""
    with tempfile.TemporaryDirectory(prefix="outpost-agent-bundle-") as tmp:
        dest = Path(tmp) / "bundle"
        agent_bundle.unpack(tarball, dest)
        return agent_bundle.bundle_version(dest), code_digest(
            dest / p for p in agent_bundle.PACKAGES
        )


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


def upload_release(
    services: Services, actor: str, data: dict[str, Any], stream: IO[bytes]
) -> dict[str, Any]:
    """``POST /agent-releases?version=&sha256=``: store and check a release bundle."""
    query = parse(ReleaseQuery, data)
    name = release_name(query.version)
    with services.db.transaction() as s:
        if s.scalar(select(Image).where(Image.name == name)) is not None:
            raise ApiError(409, "conflict", f"agent release {query.version} exists")
    root = services.settings.datastore_dir
    size = store_upload(root, stream, query.sha256, MAX_AGENT_BUNDLE_BYTES)
    blob = blob_path(root, query.sha256)
    try:
        declared, digest = inspect_bundle(blob)
        if declared != query.version:
            raise BundleError(f"the bundle declares version {declared}, not {query.version}")
    except BundleError as exc:
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
        audit(s, actor, "agent-release.add", query.version, after=out)
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
        raise ApiError(  # the stored trust policy refuses it: a conflict, not a bad body
            409,
            "not_allowed",
            f"the fleet agent allowlist does not list this release's code digest {digest};"
            " add it to the trust policy first",
        )
    trust = trust_of(s, node)
    baseline = dict(trust.baseline or {})
    if baseline and digest not in baseline.get("agent", []):
        baseline["agent"] = sorted({*baseline.get("agent", []), digest})
        trust.baseline = baseline


def set_node_release(
    s: Session, services: Services, actor: str, key: str, data: Any
) -> dict[str, Any]:
    """``PUT /nodes/<key>/agent-release``: the release the node should run (or none)."""
    body = parse(NodeReleaseBody, data)
    node = find_node(s, key)
    if body.version is None:
        update_node(s, actor, key, agent=None)
        return {"serial": node.serial, "agent": None}
    image = _release(s, body.version)
    blob = blob_path(services.settings.datastore_dir, image.sha256)
    try:
        declared, digest = inspect_bundle(blob)
    except BundleError as exc:
        raise ApiError(409, "bad_bundle", f"release {body.version} is unusable: {exc}") from exc
    if declared != body.version:
        raise ApiError(409, "bad_bundle", f"release blob declares version {declared}")
    manifest = _manifest(image, body.version, digest)
    signed = envelope.seal(manifest.model_dump(mode="json"), services.pki.signing)
    try:
        target = AgentTarget.model_validate(
            {
                "version": body.version,
                "image": {
                    "sha256": image.sha256,
                    "size": image.size,
                    "url": image_url(services.settings.public_url, image),
                },
                "manifest": signed,
            }
        )
    except ValidationError as exc:
        raise ApiError(409, "bad_bundle", f"release {body.version}: {exc}") from exc
    _allow_in_baseline(s, node, digest)
    update_node(s, actor, key, agent=target.model_dump(mode="json"))
    audit(s, actor, "node.agent-release", node.serial, version=body.version, code_digest=digest)
    return {"serial": node.serial, "agent": {"version": body.version, "code_digest": digest}}
