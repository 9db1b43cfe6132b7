"""Writer of OCI image layouts packed as a single tar ("oci-archive", what ``podman load`` reads).

The archive holds ``oci-layout``, ``index.json`` (with the ``org.opencontainers.image.ref.name``
annotation) and ``blobs/sha256/`` with the image manifest, the config and one gzip layer. JSON is
canonical (sorted keys, no spaces) and every timestamp is the epoch, so the output is stable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from images import fstree
from images.common import gzip_deterministic, sha256_bytes

FORMAT = "oci-archive"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an OCI image config (entrypoint unset unless given)."""

    cmd: tuple[str, ...]
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    entrypoint: tuple[str, ...] | None = None
    working_dir: str = "/"
    architecture: str = "amd64"
    os: str = "linux"
    labels: dict[str, str] = field(default_factory=dict)


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: one byte string per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": f"sha256:{sha256_bytes(blob)}", "size": len(blob)}


def _config_json(config: ImageConfig, diff_id: str, created_by: str) -> bytes:
    runtime: dict[str, Any] = {
        "Cmd": list(config.cmd),
        "Env": list(config.env),
        "WorkingDir": config.working_dir,
    }
    if config.entrypoint is not None:
        runtime["Entrypoint"] = list(config.entrypoint)
    if config.labels:
        runtime["Labels"] = dict(config.labels)
    return canonical_json(
        {
            "architecture": config.architecture,
            "os": config.os,
            "created": EPOCH,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": EPOCH, "created_by": created_by}],
        }
    )


def build_oci_archive(
    layer_tar: bytes, config: ImageConfig, ref_name: str, created_by: str = "outpost images"
) -> bytes:
    """Pack one uncompressed layer tar and a config into an oci-archive tar (returned as bytes)."""
    layer = gzip_deterministic(layer_tar, level=6)  # gzip's default: -9 took 2x as long
    config_blob = _config_json(config, f"sha256:{sha256_bytes(layer_tar)}", created_by)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": _descriptor(MEDIA_CONFIG, config_blob),
            "layers": [_descriptor(MEDIA_LAYER_GZIP, layer)],
        }
    )
    manifest_descriptor = _descriptor(MEDIA_MANIFEST, manifest)
    manifest_descriptor["annotations"] = {REF_NAME_ANNOTATION: ref_name}
    manifest_descriptor["platform"] = {"architecture": config.architecture, "os": config.os}
    index = canonical_json(
        {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_descriptor]}
    )
    entries = [
        fstree.file("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
        fstree.file("index.json", index),
        fstree.directory("blobs"),
        fstree.directory("blobs/sha256"),
    ]
    for blob in {manifest, config_blob, layer}:
        entries.append(fstree.file(f"blobs/sha256/{sha256_bytes(blob)}", blob))
    return fstree.tar_bytes(entries)
