"""Request bodies of the operator API (pydantic, unknown fields refused, sizes bounded).

The API routes, the web UI, git sync and rollouts all validate with these, so they
refuse the same things in the same words.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from controller.domain.common import Body
from protocol.desired_state import (
    MAX_IMAGE_BYTES,
    Adapter,
    AppNetwork,
    DataDisk,
    ImageFormat,
    Name,
    Resources,
    Sha256Hex,
)
from protocol.desired_state import Network as NetworkSpec
from protocol.health import HealthProbe
from protocol.messages import Serial

__all__ = [
    "AppBody",
    "ClaimBody",
    "CommandBody",
    "ImageQuery",
    "ImageRegistration",
    "LabelKey",
    "LabelValue",
    "NetworkBody",
    "NodePatch",
]

LabelKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]{0,62}$")]
LabelValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{0,63}$")]


class ClaimBody(Body):
    serial: Serial


class NodePatch(Body):
    labels: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=32)
    settings: dict[str, Any] | None = None
    """Overrides of the node settings (validated against NodeSettings)."""


class CommandBody(Body):
    command: Literal["reboot", "restart", "purge"]
    app: Name | None = None


class AppBody(Body):
    """An app definition as operators write it (the image by name)."""

    name: Name
    kind: Literal["vm", "container"]
    image: Name
    resources: Resources = Resources()
    env: dict[str, str] = Field(default_factory=dict)
    command: list[str] = Field(default_factory=list)
    desired: Literal["running", "stopped"] = "running"
    networks: list[AppNetwork] = Field(default_factory=list)
    adapters: list[Adapter] = Field(default_factory=list)
    disks: list[DataDisk] = Field(default_factory=list)
    vtpm: bool = False
    start_delay_s: float = 0.0
    health: HealthProbe | None = None
    """How the agent checks the app works; rollout gates read the verdict."""
    selector: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=16)
    """Run on every node whose labels include these (besides explicit assignments)."""


SPEC_FIELDS = {
    "resources",
    "env",
    "command",
    "desired",
    "networks",
    "adapters",
    "disks",
    "vtpm",
    "start_delay_s",
    "health",
}


class ImageQuery(Body):
    name: Name
    format: ImageFormat
    sha256: Sha256Hex


class ImageRegistration(Body):
    """An image held elsewhere (any HTTP(S) datastore): nodes fetch it from ``url``."""

    name: Name
    format: ImageFormat
    sha256: Sha256Hex
    size: int = Field(gt=0, le=MAX_IMAGE_BYTES)
    url: str = Field(pattern=r"^https?://", max_length=2048)


class NetworkBody(Body):
    """An app network: a private IPv4 subnet, optionally NATed to the node's uplink."""

    name: Name
    subnet: str = Field(max_length=43)
    nat: bool = False

    @model_validator(mode="after")
    def _check(self) -> NetworkBody:
        NetworkSpec(name=self.name, subnet=self.subnet, nat=self.nat)
        return self
