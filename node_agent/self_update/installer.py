"""Install an agent release beside the running one: verify the manifest, download the
bundle through an image store (sha256 and size verified), unpack into a temporary
directory, check its version and code digest, then rename it to ``versions/<version>``.

A crash at any point leaves either no ``versions/<version>`` or a complete one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509

from node_agent.image_store import ImageStore, Progress
from node_agent.self_update.bundle import check_unpacked
from node_agent.self_update.manifest import verify_manifest
from node_agent.self_update.state import Paths
from protocol.agent_bundle import unpack
from protocol.desired_state import AgentManifest, AgentTarget, ImageRef

__all__ = ["MANIFEST_FILE", "install", "installed_manifest"]

log = logging.getLogger(__name__)
MANIFEST_FILE = "manifest.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def installed_manifest(version_dir: Path) -> AgentManifest | None:
    """The manifest of a complete install (None when there is none or it is unreadable)."""
    try:
        raw = json.loads((version_dir / MANIFEST_FILE).read_text())
        return AgentManifest.model_validate(raw["manifest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _bundle_ref(target: AgentTarget) -> ImageRef:
    return ImageRef(
        name=f"agent-{target.image.sha256[:16]}",
        sha256=target.image.sha256,
        size=target.image.size,
        url=target.image.url,
        format="raw",
    )


def install(
    target: AgentTarget,
    store: ImageStore,
    signers: Iterable[x509.Certificate],
    paths: Paths,
    progress: Progress | None = None,
) -> Path:
    """The directory of the installed release (installing it when needed).

    Raises ManifestRefused, BundleError or ImageError; nothing is installed then.
    """
    manifest = verify_manifest(target, signers)  # before a byte is downloaded
    final = paths.version_dir(target.version)
    if final.is_dir():
        if installed_manifest(final) == manifest:
            check_unpacked(final, manifest.version, manifest.code_digest)
            return final
        log.warning("replacing the incomplete or different install %s", final)
        shutil.rmtree(final)
    blob = store.ensure(_bundle_ref(target), progress)
    paths.versions.mkdir(parents=True, exist_ok=True)
    tmp = paths.versions / f".install-{target.version}-{uuid.uuid4().hex[:8]}"
    try:
        unpack(blob, tmp)
        check_unpacked(tmp, manifest.version, manifest.code_digest)
        record = {
            "manifest": manifest.model_dump(mode="json"),
            "signed": target.manifest.model_dump(),
        }
        with open(tmp / MANIFEST_FILE, "x") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        for directory in sorted({p.parent for p in tmp.rglob("*")}, key=lambda p: -len(p.parts)):
            _fsync_dir(directory)
        os.rename(tmp, final)
        _fsync_dir(paths.versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        store.gc(())  # the unpacked copy is what is kept
    log.info("agent %s installed in %s", target.version, final)
    return final
