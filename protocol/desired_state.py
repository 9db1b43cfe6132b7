"""The per-node desired state: what the controller wants a node to run.

One document per node (JSON on the wire, YAML for humans), validated the same way
on both sides.  Every field is bounded; unknown fields are refused; errors name the
field.  Shape (docs/architecture.md):

    generation, settings, networks[{name, subnet, nat}],
    apps[{uuid, name, kind, image{name, sha256, size, url, format}, resources,
          networks[{name, ports[{host, guest, proto}]}], adapters[{kind, match}],
          env, command, desired, restart_counter, purge_counter, start_delay_s,
          user_data, user_data_secret}]
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Annotated, Any, Final, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)
from pydantic.config import JsonDict

from protocol.app_config import UserData
from protocol.compat import omit_defaults
from protocol.downloads import MAX_PREFETCH, DownloadPolicy
from protocol.health import HealthProbe
from protocol.model_base import MAX_COUNT, StrictModel, Timestamp

SCHEMA_VERSION: Final = 1

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Uuid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
ImageFormat = Literal["kernel-bundle", "qcow2", "raw", "oci-archive"]
VM_FORMATS = ("kernel-bundle", "qcow2", "raw")
CONTAINER_FORMATS = ("oci-archive",)
Port = Annotated[int, Field(ge=1, le=65535)]
StartDelay = Annotated[float, Field(ge=0.0, le=3600.0, allow_inf_nan=False)]
"""Seconds an app waits after the node starts before it is started (0 to 1 hour)."""

MAX_IMAGE_BYTES = 64 * 1024**3
MAX_APPS_PER_NODE = 64
MAX_NETWORKS = 16


class ImageRef(StrictModel):
    """A content-addressed image: the node verifies sha256 and size before use."""

    name: Name
    sha256: Sha256Hex
    size: int = Field(gt=0, le=MAX_IMAGE_BYTES)
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]
    format: ImageFormat


class Resources(StrictModel):
    vcpus: int = Field(default=1, ge=1, le=64)
    disk_mib: int = Field(default=0, ge=0, le=1024 * 1024)
    """Size of the writable root (VM overlay) or data disk; 0 = the image's own size."""
    memory_mib: int = Field(default=128, ge=16, le=1024 * 1024)
    """The tiny test VM needs at least 72 MiB (its kernel unpacks to ~52 MiB)."""


class PortMap(StrictModel):
    """Publish ``guest`` of the app on ``host`` of the node (DNAT); nothing else is open."""

    host: Port
    guest: Port
    proto: Literal["tcp", "udp"] = "tcp"


class AppNetwork(StrictModel):
    """An app's attachment to one of the node's networks."""

    name: Name
    ports: list[PortMap] = Field(default_factory=list, max_length=64)


class Adapter(StrictModel):
    """A physical device passed through to a VM app.

    ``match``: a PCI address (``0000:00:02.0``) or ``vendor:device`` for gpu/pci,
    ``vendor:product`` for usb (hex).
    """

    kind: Literal["gpu", "pci", "usb"]
    match: Annotated[
        str,
        StringConstraints(
            pattern=r"^([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]|[0-9a-f]{4}:[0-9a-f]{4})$"
        ),
    ]
    optional: bool = False
    """gpu/pci only: when the node lacks the device (or cannot pass it through whole), run
    the app without it instead of refusing it (e.g. the inference VM falls back to CPU)."""


MAX_DATA_DISKS = 4
MAX_DATA_DISK_MIB = 1024 * 1024  # 1 TiB


class DataDisk(StrictModel):
    """A blank writable disk of a VM app (qcow2, thin), kept until the app is purged.

    ``name`` is also the disk's serial in the guest (``/dev/disk/by-id/virtio-<name>``),
    hence at most 20 characters (virtio-blk's serial limit).
    """

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")]
    size_mib: int = Field(ge=1, le=MAX_DATA_DISK_MIB)


class Network(StrictModel):
    """A node-local app network (one bridge shared by VMs and containers)."""

    name: Name
    subnet: Annotated[str, StringConstraints(max_length=43)]
    nat: bool = False
    """Allow egress to the outside through the node (masquerade)."""

    @model_validator(mode="after")
    def _valid_subnet(self) -> Network:
        try:
            net = ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as exc:
            raise ValueError(f"network {self.name!r}: subnet {self.subnet!r}: {exc}") from exc
        if not 16 <= net.prefixlen <= 29:
            raise ValueError(f"network {self.name!r}: prefix must be /16 to /29")
        return self


Env = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")],
        Annotated[str, StringConstraints(max_length=4096)],
    ],
    Field(max_length=128),
]
Command = Annotated[list[Annotated[str, StringConstraints(max_length=4096)]], Field(max_length=64)]
AppNetworks = Annotated[list[AppNetwork], Field(max_length=8)]
Adapters = Annotated[list[Adapter], Field(max_length=8)]
DataDisks = Annotated[list[DataDisk], Field(max_length=MAX_DATA_DISKS)]

VM_ONLY_SCHEMA: JsonDict = {
    "if": {"properties": {"kind": {"const": "container"}}, "required": ["kind"]},
    "then": {
        "properties": {
            "adapters": {"maxItems": 0},
            "disks": {"maxItems": 0},
            "vtpm": {"const": False},
        }
    },
}
"""The VM-only fields in JSON Schema: a container has no adapters, data disks or vTPM."""


def check_app_shape(
    name: str,
    kind: str,
    adapters: list[Adapter],
    disks: list[DataDisk],
    vtpm: bool,
    networks: list[AppNetwork],
) -> None:
    """The rules of an app's own fields (no image needed): VM-only fields, no name twice."""
    if adapters and kind != "vm":
        raise ValueError(f"app {name!r}: adapters can only be passed through to a VM")
    if (disks or vtpm) and kind != "vm":
        raise ValueError(f"app {name!r}: data disks and a vTPM are for VMs only")
    disk_names = [d.name for d in disks]
    if len(disk_names) != len(set(disk_names)):
        raise ValueError(f"app {name!r}: a data disk name is listed twice")
    names = [n.name for n in networks]
    if len(names) != len(set(names)):
        raise ValueError(f"app {name!r}: a network is listed twice")


class AppSpec(StrictModel):
    """One app instance the node must run (a VM or a container)."""

    uuid: Uuid
    name: Name
    kind: Literal["vm", "container"]
    image: ImageRef
    resources: Resources = Resources()
    env: Env = Field(default_factory=dict)
    command: Command = Field(default_factory=list)
    desired: Literal["running", "stopped"] = "running"
    networks: AppNetworks = Field(default_factory=list)
    adapters: Adapters = Field(default_factory=list)
    restart_counter: int = Field(default=0, ge=0, le=MAX_COUNT)
    """Raised by the operator's 'restart' command: restart once per increase (EVE)."""
    purge_counter: int = Field(default=0, ge=0, le=MAX_COUNT)
    """Raised by 'purge': recreate the app's writable state once per increase."""
    start_delay_s: StartDelay = 0.0
    disks: DataDisks = Field(default_factory=list)
    """Blank data disks (VMs only); purge recreates them along with the root disk."""
    vtpm: bool = False
    """Give the VM its own emulated TPM 2.0 (swtpm; VMs only)."""
    user_data: UserData | None = None
    """Text for the app (cloud-config, a script, JSON): a VM gets it on its NoCloud seed
    disk and from the metadata service, a container as a file and env (protocol.app_config)."""
    user_data_secret: bool = False
    """The operator marked ``user_data`` secret: the controller never shows it to anyone
    (only its digest) and nothing logs it."""

    health: HealthProbe | None = None
    """How the agent checks the app works (protocol.health); rollout gates read it."""

    @model_serializer(mode="wrap")
    def _wire(self, handler: SerializerFunctionWrapHandler) -> Any:
        return omit_defaults(
            handler(self), {"health": None, "user_data": None, "user_data_secret": False}
        )

    @model_validator(mode="after")
    def _kind_matches_format(self) -> AppSpec:
        wanted = VM_FORMATS if self.kind == "vm" else CONTAINER_FORMATS
        if self.image.format not in wanted:
            raise ValueError(
                f"app {self.name!r}: kind {self.kind!r} needs image format"
                f" {' or '.join(wanted)}, got {self.image.format!r}"
            )
        check_app_shape(self.name, self.kind, self.adapters, self.disks, self.vtpm, self.networks)
        check_probe(self.name, self.kind, [n.name for n in self.networks], self.health)
        return self


def check_probe(app: str, kind: str, networks: list[str], probe: HealthProbe | None) -> None:
    """A probe the app can be probed with: exec in containers, HTTP/TCP on an app network."""
    if probe is None:
        return
    if probe.kind == "exec" and kind != "container":
        raise ValueError(f"app {app!r}: an exec probe runs inside a container; use http or tcp")
    if probe.kind in ("http", "tcp"):
        if not networks:
            raise ValueError(f"app {app!r}: a {probe.kind} probe needs the app on an app network")
        if probe.network is not None and probe.network not in networks:
            raise ValueError(f"app {app!r}: the probe's network {probe.network!r} is not its own")


AgentVersion = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,6}(-[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,4})?$",
        max_length=57,
    ),
]
"""An agent release version: ``MAJOR.MINOR.PATCH`` with an optional ``-pre.release`` tag;
at most 57 characters (its release is the image ``agent-<version with dashes>``, a Name)."""
MAX_AGENT_BUNDLE_BYTES = 64 * 1024**2


class AgentBundleRef(StrictModel):
    """Where an agent release's tarball is and what it must hash to."""

    sha256: Sha256Hex
    size: int = Field(gt=0, le=MAX_AGENT_BUNDLE_BYTES)
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]


class SignedManifest(StrictModel):
    """A signed envelope (attestation.envelope) whose body is an :class:`AgentManifest`."""

    payload: Annotated[str, StringConstraints(min_length=1, max_length=8192)]
    sender_cert_sha256: Sha256Hex
    signature: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class AgentManifest(StrictModel):
    """What the controller's signing key vouches for about an agent release."""

    kind: Literal["outpost-agent-release"] = "outpost-agent-release"
    version: AgentVersion
    sha256: Sha256Hex
    size: int = Field(gt=0, le=MAX_AGENT_BUNDLE_BYTES)
    code_digest: Sha256Hex
    """attestation.measurement.code_digest of the unpacked packages (what the node measures)."""
    created: Timestamp


class AgentTarget(StrictModel):
    """The agent release a node should run (installed beside the running one, kept only
    when the node re-attests and reports within the commit window)."""

    version: AgentVersion
    image: AgentBundleRef
    manifest: SignedManifest


class OperatorSettings(StrictModel):
    """The node-wide settings an operator sets (``PATCH /nodes/{key}``, git): every
    external port is off unless turned on here."""

    config_interval_s: float = Field(default=60.0, ge=1.0, le=86400.0)
    info_interval_s: float = Field(default=600.0, ge=1.0, le=86400.0)
    metrics_interval_s: float = Field(default=60.0, ge=1.0, le=86400.0)
    debug_ssh: bool = False
    """Open SSH (port 22) on the node; off by default (EVE's debug.enable.ssh)."""
    ssh_authorized_keys: list[Annotated[str, StringConstraints(max_length=8192)]] = Field(
        default_factory=list, max_length=16
    )
    debug_console: bool = False
    """Allow a login on the serial console; off by default (EVE's debug.enable.console)."""
    usb_policy: Literal["deny", "assigned-only"] = "deny"
    """deny: no USB device is authorised; assigned-only: those passed through to apps."""


class NodeSettings(OperatorSettings):
    """Node-wide settings as the node receives them: the operator's, plus the agent release
    (set only by ``PUT /nodes/{key}/agent-release``, which checks and signs it)."""

    agent: AgentTarget | None = None
    """The agent release to run (self-update); None: keep the running one."""
    downloads: DownloadPolicy | None = None
    """This node's download rate share and window (protocol.downloads); None: no limits."""

    @model_serializer(mode="wrap")
    def _wire(self, handler: SerializerFunctionWrapHandler) -> Any:
        return omit_defaults(handler(self), {"downloads": None})


class DesiredState(StrictModel):
    """Everything a node should be running, as of ``generation``."""

    schema_version: Literal[1] = SCHEMA_VERSION
    node_uuid: Uuid
    generation: int = Field(ge=0, le=MAX_COUNT)
    reboot_counter: int = Field(default=0, ge=0, le=MAX_COUNT)
    """Raised by the operator's 'reboot' command: the node reboots once per increase."""
    settings: NodeSettings = NodeSettings()
    networks: list[Network] = Field(default_factory=list, max_length=MAX_NETWORKS)
    apps: list[AppSpec] = Field(default_factory=list, max_length=MAX_APPS_PER_NODE)
    prefetch: list[ImageRef] = Field(default_factory=list, max_length=MAX_PREFETCH)
    """Images to download ahead (a rollout's next version), in the download window, not run."""

    @model_serializer(mode="wrap")
    def _wire(self, handler: SerializerFunctionWrapHandler) -> Any:
        return omit_defaults(handler(self), {"prefetch": []})

    @model_validator(mode="after")
    def _consistent(self) -> DesiredState:
        for attr in ("uuid", "name"):
            seen: set[str] = set()
            for app in self.apps:
                value = getattr(app, attr)
                if value in seen:
                    raise ValueError(f"duplicate app {attr} {value!r}")
                seen.add(value)
        nets = {n.name: n for n in self.networks}
        if len(nets) != len(self.networks):
            raise ValueError("duplicate network name")
        subnets = [ipaddress.IPv4Network(n.subnet) for n in self.networks]
        for i, a in enumerate(subnets):
            for b in subnets[i + 1 :]:
                if a.overlaps(b):
                    raise ValueError(f"networks {a} and {b} overlap")
        ports: dict[tuple[int, str], str] = {}
        for app in self.apps:
            for att in app.networks:
                if att.name not in nets:
                    raise ValueError(f"app {app.name!r}: unknown network {att.name!r}")
                for pm in att.ports:
                    key = (pm.host, pm.proto)
                    if key in ports:
                        raise ValueError(
                            f"host port {pm.host}/{pm.proto} is mapped by both"
                            f" {ports[key]!r} and {app.name!r}"
                        )
                    ports[key] = app.name
        seen_adapters: dict[str, str] = {}
        for app in self.apps:
            for ad in app.adapters:
                if ad.match in seen_adapters:
                    raise ValueError(
                        f"adapter {ad.match} is assigned to both {seen_adapters[ad.match]!r}"
                        f" and {app.name!r}"
                    )
                seen_adapters[ad.match] = app.name
        return self

    def content_hash(self) -> str:
        """sha256 of the content: everything but ``generation``.

        The one hash of a desired state: the controller bumps the generation when it
        changes, and a node sends it to ask "has anything changed?"."""
        content = self.model_dump(mode="json", exclude={"generation"})
        return hashlib.sha256(
            json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
