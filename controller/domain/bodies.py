"""Request bodies of the operator API (pydantic, unknown fields refused, sizes bounded).

The API routes, the web UI, git sync and rollouts all validate with these, so they
refuse the same things in the same words.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from controller.domain.common import Body
from protocol.app_config import UserData
from protocol.desired_state import (
    MAX_IMAGE_BYTES,
    NAME_PATTERN,
    VM_ONLY_SCHEMA,
    Adapters,
    AppNetworks,
    Command,
    DataDisks,
    Env,
    ImageFormat,
    Name,
    OperatorSettings,
    Resources,
    Sha256Hex,
    StartDelay,
    check_app_shape,
)
from protocol.desired_state import Network as NetworkSpec
from protocol.messages import SERIAL_PATTERN, Serial

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

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
SUBNET_PATTERN = rf"^({_OCTET}\.){{3}}{_OCTET}/(1[6-9]|2[0-9])$"
"""An IPv4 network of /16 to /29 (dotted quad without leading zeros)."""

LabelKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]{0,62}$")]
LabelValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{0,63}$")]


def _not_one_of(pattern: str, *words: str) -> Any:
    """A string of ``pattern`` that is none of ``words`` (the literal path segments beside
    ``/<key>`` routes: a node named "claim" would be unreachable at ``/nodes/claim``); the
    schema's pattern says so with a lookahead (the check itself is plain Python)."""

    def check(value: str) -> str:
        if value in words:
            raise ValueError(f"{value!r} is reserved (a path word); choose another")
        return value

    avoid = "|".join(re.escape(w) for w in words)
    schema_pattern = f"^(?!(?:{avoid})$){pattern.removeprefix('^')}"
    return [AfterValidator(check), Field(json_schema_extra={"pattern": schema_pattern})]


ClaimSerial = Annotated[Serial, *_not_one_of(SERIAL_PATTERN, "claim")]
ImageName = Annotated[Name, *_not_one_of(NAME_PATTERN, "register")]


class ClaimBody(Body):
    serial: ClaimSerial


class NodePatch(Body):
    labels: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=32)
    settings: OperatorSettings | None = None
    """Overrides of the node settings (what is left out keeps its default); the agent
    release is not one: ``PUT /nodes/{key}/agent-release`` sets it."""


class CommandBody(Body):
    """``reboot`` the node, or ``restart``/``purge`` one app instance (``app`` required)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"command": {"const": "reboot"}}},
                {"required": ["app"], "properties": {"app": {"type": "string"}}},
            ]
        }
    )

    command: Literal["reboot", "restart", "purge"]
    app: Name | None = None

    @model_validator(mode="after")
    def _app_for_app_commands(self) -> CommandBody:
        if self.command != "reboot" and self.app is None:
            raise ValueError(f"{self.command} needs an app")
        return self


class AppBody(Body):
    """An app definition as operators write it (the image by name)."""

    model_config = ConfigDict(
        json_schema_extra={
            **VM_ONLY_SCHEMA,
            "x-rules": ["each network is listed once", "each data disk name is listed once"],
        }
    )

    name: Name
    kind: Literal["vm", "container"]
    image: Name
    resources: Resources = Resources()
    env: Env = Field(default_factory=dict)
    command: Command = Field(default_factory=list)
    desired: Literal["running", "stopped"] = "running"
    networks: AppNetworks = Field(default_factory=list)
    adapters: Adapters = Field(default_factory=list)
    disks: DataDisks = Field(default_factory=list)
    vtpm: bool = False
    start_delay_s: StartDelay = 0.0
    user_data: UserData | None = None
    """Text for the app (≤ 64 KiB UTF-8): a VM's NoCloud seed and metadata service, a
    container's /run/outpost/user-data."""
    user_data_secret: bool = False
    """Never show ``user_data`` (answers and the audit log carry its digest only)."""
    selector: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=16)
    """Run on every node whose labels include these (besides explicit assignments)."""

    @model_validator(mode="after")
    def _shape(self) -> AppBody:
        check_app_shape(self.name, self.kind, self.adapters, self.disks, self.vtpm, self.networks)
        return self


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
    "user_data",
    "user_data_secret",
}


class ImageQuery(Body):
    name: ImageName
    format: ImageFormat
    sha256: Sha256Hex


class ImageRegistration(Body):
    """An image held elsewhere (any HTTP(S) datastore): nodes fetch it from ``url``."""

    name: ImageName
    format: ImageFormat
    sha256: Sha256Hex
    size: int = Field(gt=0, le=MAX_IMAGE_BYTES)
    url: str = Field(pattern=r"^https?://", max_length=2048)


class NetworkBody(Body):
    """An app network: a private IPv4 subnet, optionally NATed to the node's uplink."""

    name: Name
    subnet: Annotated[str, StringConstraints(pattern=SUBNET_PATTERN)]
    """``a.b.c.d/len`` with len 16 to 29; host bits are cleared (10.1.0.5/24 → 10.1.0.0/24)."""
    nat: bool = False

    @field_validator("subnet")
    @classmethod
    def _network_address(cls, value: str) -> str:
        return str(ipaddress.IPv4Network(value, strict=False))

    @model_validator(mode="after")
    def _check(self) -> NetworkBody:
        NetworkSpec(name=self.name, subnet=self.subnet, nat=self.nat)
        return self
