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
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
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
    check_probe,
)
from protocol.desired_state import Network as NetworkSpec
from protocol.health import HealthProbe
from protocol.messages import SERIAL_PATTERN, Serial

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


RESERVED_SERIALS = ("claim", "import")
"""Path words beside ``/nodes/<key>``: no node may be named so."""
ClaimSerial = Annotated[Serial, *_not_one_of(SERIAL_PATTERN, *RESERVED_SERIALS)]
ImageName = Annotated[Name, *_not_one_of(NAME_PATTERN, "register")]


MAX_FINGERPRINT_CHARS = 256
FINGERPRINT_PATTERN = r"^[ \t\n\r]*(?:[Ss][Hh][Aa]256:)?:*(?:(?:[0-9A-Fa-f]:*){64})?[ \t\n\r]*$"
"""What :func:`_fingerprint` takes, as the document states it: 64 hex digits in any case,
``:`` anywhere, an optional ``sha256:`` prefix, blanks around; or no digits (none)."""


def _fingerprint(value: Any) -> Any:
    """A sha256 fingerprint as operators paste it: any case, ``:`` separated, or with a
    ``sha256:`` prefix, becomes 64 lower-case hex digits."""
    if isinstance(value, str):
        if len(value) > MAX_FINGERPRINT_CHARS:
            raise ValueError(f"at most {MAX_FINGERPRINT_CHARS} characters")
        # only the blanks the pattern allows (str.strip would take \x1c or \x85 too)
        value = value.strip(" \t\n\r").lower().removeprefix("sha256:").replace(":", "")
        return value or None
    return value


Fingerprint = Annotated[
    Sha256Hex | None,
    BeforeValidator(_fingerprint),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": FINGERPRINT_PATTERN,
                    "maxLength": MAX_FINGERPRINT_CHARS,
                },
                {"type": "null"},
            ]
        }
    ),
]
"""An optional sha256 fingerprint ('' and None: none)."""


class ClaimBody(Body):
    serial: ClaimSerial
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
            "x-rules": [
                "each network is listed once",
                "each data disk name is listed once",
                "a variable is in env or in secret_env, not both",
            ],
        }
    )

    name: Name
    kind: Literal["vm", "container"]
    image: Name
    resources: Resources = Resources()
    env: Env = Field(default_factory=dict)
    secret_env: Env = Field(default_factory=dict)
    """Environment the app gets like ``env``, whose values are shown to no viewer and
    written to no audit log (``<secret>`` there); the node receives both as one ``env``."""
    command: Command = Field(default_factory=list)
    desired: Literal["running", "stopped"] = "running"
    networks: AppNetworks = Field(default_factory=list)
    adapters: Adapters = Field(default_factory=list)
    disks: DataDisks = Field(default_factory=list)
    vtpm: bool = False
    start_delay_s: StartDelay = 0.0
    health: HealthProbe | None = None
    """How the agent checks the app works; rollout gates read the verdict."""
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
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"env and secret_env both set {', '.join(both)}")
        check_probe(self.name, self.kind, [n.name for n in self.networks], self.health)
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
    "health",
    "user_data",
    "user_data_secret",
}


HTTP_HOST = r"^https?://[A-Za-z0-9._-]+(:[0-9]{1,5})?"
"""Scheme and host (a DNS name or IPv4 address, no user info, no IPv6 literal) and port."""
NOT_IN_URL = r"\x00-\x20\x7f-\x9f\[\]"
"""What no URL taken here may hold, as the inside of a character class: C0, space, DEL,
C1 and brackets. Spelled out, not ``\\s``: that is not the same set in JSON Schema
(ECMA-262), Python and pydantic, so a generator would take for valid what the server
refuses."""
URL_REST = rf"([/?#][^{NOT_IN_URL}]*)?$"
HttpUrl = Annotated[str, StringConstraints(pattern=HTTP_HOST + URL_REST, max_length=2048)]
"""An http(s) URL every URL parser splits the same way (brackets only ever open an IPv6
host, so they are refused anywhere)."""


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
    url: HttpUrl


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
