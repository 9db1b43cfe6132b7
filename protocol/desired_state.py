"""The per-node desired state: what the controller wants a node to run.

One document per node (JSON on the wire, YAML for humans).  Version 1 is the
walking skeleton's subset of the design's schema; later fields are added here
and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

SCHEMA_VERSION = 1

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Uuid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
ImageFormat = Literal["kernel-bundle", "oci-archive"]

MAX_IMAGE_BYTES = 64 * 1024**3
MAX_APPS_PER_NODE = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageRef(_Strict):
    """A content-addressed image: the node verifies sha256 and size before use."""

    name: Name
    sha256: Sha256Hex
    size: int = Field(gt=0, le=MAX_IMAGE_BYTES)
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]
    format: ImageFormat


class Resources(_Strict):
    vcpus: int = Field(default=1, ge=1, le=64)
    memory_mib: int = Field(default=128, ge=16, le=1024 * 1024)
    """The tiny test VM needs at least 72 MiB (its kernel unpacks to ~52 MiB)."""


class AppSpec(_Strict):
    """One app instance the node must run (a VM or a container)."""

    uuid: Uuid
    name: Name
    kind: Literal["vm", "container"]
    image: ImageRef
    resources: Resources = Resources()
    env: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")],
        Annotated[str, StringConstraints(max_length=4096)],
    ] = Field(default_factory=dict, max_length=128)
    command: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=list, max_length=64
    )
    desired: Literal["running", "stopped"] = "running"

    @model_validator(mode="after")
    def _kind_matches_format(self) -> AppSpec:
        wanted = {"vm": "kernel-bundle", "container": "oci-archive"}[self.kind]
        if self.image.format != wanted:
            raise ValueError(
                f"app {self.name!r}: kind {self.kind!r} needs image format {wanted!r},"
                f" got {self.image.format!r}"
            )
        return self


class NodeSettings(_Strict):
    config_interval_s: float = Field(default=60.0, ge=1.0, le=86400.0)
    info_interval_s: float = Field(default=600.0, ge=1.0, le=86400.0)


class DesiredState(_Strict):
    """Everything a node should be running, as of ``generation``."""

    schema_version: Literal[1] = SCHEMA_VERSION
    node_uuid: Uuid
    generation: int = Field(ge=0)
    settings: NodeSettings = NodeSettings()
    apps: list[AppSpec] = Field(default_factory=list, max_length=MAX_APPS_PER_NODE)

    @model_validator(mode="after")
    def _unique_apps(self) -> DesiredState:
        for attr in ("uuid", "name"):
            seen: set[str] = set()
            for app in self.apps:
                value = getattr(app, attr)
                if value in seen:
                    raise ValueError(f"duplicate app {attr} {value!r}")
                seen.add(value)
        return self

    def canonical_json(self) -> bytes:
        """Stable bytes of this document (sorted keys, no spaces)."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        ).encode()

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()
