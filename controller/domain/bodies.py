"""Request bodies of the operator API (pydantic, unknown fields refused, sizes bounded).

The API routes, the web UI, git sync and rollouts all validate with these, so they
refuse the same things in the same words.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, model_validator

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
from protocol.messages import Serial

__all__ = [
    "AppBody",
    "ClaimBody",
    "CommandBody",
    "Fingerprint",
    "ImageQuery",
    "ImageRegistration",
    "LabelKey",
    "LabelValue",
    "NetworkBody",
    "NodePatch",
]

LabelKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]{0,62}$")]
LabelValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{0,63}$")]


def _fingerprint(value: Any) -> Any:
    """A sha256 fingerprint as operators paste it: any case, ``:`` separated, or with a
    ``sha256:`` prefix, becomes 64 lower-case hex digits."""
    if isinstance(value, str):
        value = value.strip().lower().removeprefix("sha256:").replace(":", "")
        return value or None
    return value


Fingerprint = Annotated[Sha256Hex | None, BeforeValidator(_fingerprint)]
"""An optional sha256 fingerprint ('' and None: none)."""


class ClaimBody(Body):
    serial: Serial
    device_cert_sha256: Fingerprint = None
    """The node's device certificate (``outpost-agent identity``, the node's console):
    only that identity may register."""
    ek_sha256: Fingerprint = None
    """The node's TPM EK certificate: only a node with that TPM may register."""

    @property
    def pinned(self) -> bool:
        return bool(self.device_cert_sha256 or self.ek_sha256)


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
    secret_env: dict[str, str] = Field(default_factory=dict)
    """Environment the app gets like ``env``, whose values are shown to no viewer and
    written to no audit log (``<secret>`` there); the node receives both as one ``env``."""
    command: list[str] = Field(default_factory=list)
    desired: Literal["running", "stopped"] = "running"
    networks: list[AppNetwork] = Field(default_factory=list)
    adapters: list[Adapter] = Field(default_factory=list)
    disks: list[DataDisk] = Field(default_factory=list)
    vtpm: bool = False
    start_delay_s: float = 0.0
    selector: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=16)
    """Run on every node whose labels include these (besides explicit assignments)."""

    @model_validator(mode="after")
    def _env_names_once(self) -> AppBody:
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"env and secret_env both set {', '.join(both)}")
        return self


SPEC_FIELDS = {
    "resources",
    "env",
    "secret_env",
    "command",
    "desired",
    "networks",
    "adapters",
    "disks",
    "vtpm",
    "start_delay_s",
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
