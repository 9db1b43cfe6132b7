"""Device API messages (the payload bodies inside signed envelopes)."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, StringConstraints, model_serializer

from protocol.app_config import AppReport
from protocol.compat import omit_defaults
from protocol.desired_state import AgentVersion, Name, Sha256Hex, Uuid
from protocol.downloads import MAX_PREFETCH, DeviceLabels, PrefetchStatus
from protocol.health import AppHealth
from protocol.inventory import NodeInventory, RegistrationInventory
from protocol.model_base import MAX_COUNT, Duration, StrictModel, Timestamp
from protocol.ports import PortState
from protocol.tpm_enrolment import CredentialChallenge, TpmRegistration

SERIAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
Serial = Annotated[str, StringConstraints(pattern=SERIAL_PATTERN)]
Pem = Annotated[str, StringConstraints(min_length=64, max_length=16384)]
ShortText = Annotated[str, StringConstraints(max_length=4096)]


class AppState(enum.StrEnum):
    """EVE's app lifecycle states."""

    INITIAL = "INITIAL"
    DOWNLOADING = "DOWNLOADING"
    VERIFYING = "VERIFYING"
    LOADING = "LOADING"
    BOOTING = "BOOTING"
    RUNNING = "RUNNING"
    HALTING = "HALTING"
    HALTED = "HALTED"
    PURGING = "PURGING"
    RESTARTING = "RESTARTING"
    CRASHLOOP = "CRASHLOOP"
    """Stops on its own again and again; restarted after a growing back-off (EVE has no
    such state; the name follows Kubernetes' CrashLoopBackOff).  ``restarts``,
    ``last_exit_code``/``last_stop_reason`` and ``backoff_s`` say how it goes."""
    ERROR = "ERROR"
    """Failed: ``error`` says why.  A permanent failure (a bad image, an invalid spec) is
    not retried until the app's spec or its restart counter changes; a temporary one is
    retried with a back-off; an app that did not reach RUNNING in its start window is
    here too, with the reason."""


class RegisterRequest(StrictModel):
    """Signed with the onboarding key; carries both certificates in full."""

    serial: Serial
    onboarding_cert_pem: Pem
    device_cert_pem: Pem
    inventory: RegistrationInventory = RegistrationInventory()
    tpm: TpmRegistration | None = None
    """The node's EK certificate, EK and AK publics (None: the node has no TPM)."""


MAX_GENERATION = 2**62


class RegisterResponse(StrictModel):
    node_uuid: Uuid
    generation_floor: int = Field(default=0, ge=0, le=MAX_GENERATION)
    """The node refuses any config older than this while it holds no checkpoint (the
    controller's current generation for the node when it registered)."""
    credential: CredentialChallenge | None = None
    """The credential challenge for the AK sent in ``tpm`` (answered in the first quote)."""


class ConfigRequest(StrictModel):
    """The hash of the config the node holds ('' when it has none)."""

    config_hash: Annotated[str, StringConstraints(pattern=r"^([0-9a-f]{64})?$")] = ""
    wait_s: float = Field(default=0.0, ge=0.0, le=120.0)
    """Long-poll: when unchanged, hold the answer up to this long for a change."""


class ConfigResponse(StrictModel):
    """Either ``unchanged`` or a config envelope signed by the config-signing key."""

    unchanged: bool
    config: dict[str, Any] | None = None


MAX_IMAGE_BYTES_REPORTED = 2**50
MAX_RATE_BPS = 2.0**40


class AppStatus(StrictModel):
    uuid: Uuid
    name: Name
    state: AppState
    error: ShortText = ""
    error_time: Timestamp | None = None
    image_sha256: Sha256Hex | None = None
    progress_pct: int | None = Field(default=None, ge=0, le=100)
    """Download/verify progress of the app's image while DOWNLOADING or VERIFYING."""
    progress_bytes: int | None = Field(default=None, ge=0, le=MAX_IMAGE_BYTES_REPORTED)
    """Bytes downloaded (DOWNLOADING) or hashed (VERIFYING) so far."""
    progress_total_bytes: int | None = Field(default=None, ge=0, le=MAX_IMAGE_BYTES_REPORTED)
    """The image's size."""
    progress_rate_bps: float | None = Field(default=None, ge=0.0, le=MAX_RATE_BPS)
    """Bytes per second since the phase began (None until it can be measured)."""
    restarts: int = Field(default=0, ge=0, le=1_000_000)
    """Times the agent restarted this app after it stopped on its own, counted for the
    app's current spec (a new image or spec starts again from 0); kept across agent
    restarts."""
    last_exit_code: int | None = Field(default=None, ge=-255, le=255)
    """A container's exit code the last time it stopped on its own."""
    last_stop_reason: Annotated[str, StringConstraints(max_length=256)] = ""
    """How it stopped the last time it stopped on its own: ``exited (code 3)`` for a
    container, libvirt's state and reason for a VM (``shut off (crashed)``)."""
    backoff_s: Duration | None = None
    """In CRASHLOOP (or ERROR retrying a temporary failure): the current back-off, i.e.
    how long the agent waits between this stop and the next start."""
    retry_at: Timestamp | None = None
    """When (node clock, seconds since the epoch) the next start attempt is due after
    ``backoff_s`` (None: none scheduled).  A time, not a countdown, so an unchanged state
    makes an unchanged report."""
    health: AppHealth | None = None
    """What the app's health probe found (None: the spec has no probe)."""
    waiting: Annotated[str, StringConstraints(max_length=256)] = ""
    """What the app's current spec waits for (e.g. the download window), if anything."""

    @model_serializer(mode="wrap")
    def _wire(self, handler: SerializerFunctionWrapHandler) -> Any:
        return omit_defaults(handler(self), {"health": None, "waiting": ""})


UpdateState = Literal["downloading", "installed", "testing", "committed", "failed"]


class AgentUpdateStatus(StrictModel):
    """Where the node's agent self-update stands (reported in info)."""

    version: AgentVersion
    """The target release this is about."""
    state: UpdateState
    reason: Annotated[str, StringConstraints(max_length=1024)] = ""
    at: Timestamp = 0.0
    """When the state was entered (node clock, seconds since the epoch)."""


class InfoMessage(StrictModel):
    """Node and app states, as the agent sees them."""

    agent_version: Annotated[str, StringConstraints(max_length=64)]
    config_generation: int = Field(ge=-1, le=MAX_COUNT)
    config_hash: Annotated[str, StringConstraints(pattern=r"^([0-9a-f]{64})?$")] = ""
    hypervisor: Annotated[str, StringConstraints(max_length=16)] = ""
    apps: list[AppStatus] = Field(default_factory=list, max_length=256)
    ports: PortState | None = None
    """The node's effective port policy (firewall, open ports, USB, debug access)."""
    inventory: NodeInventory | None = None
    """The refreshed hardware inventory (PCI devices, IOMMU groups); None: unchanged/unknown."""
    agent_update: AgentUpdateStatus | None = None
    """The agent self-update in progress or last finished (None: none asked for)."""
    prefetch: list[PrefetchStatus] = Field(default_factory=list, max_length=MAX_PREFETCH)
    """How the images of ``DesiredState.prefetch`` are coming along."""
    device_labels: DeviceLabels | None = None
    """Labels the node reports about itself (None: unchanged/unknown)."""

    @model_serializer(mode="wrap")
    def _wire(self, handler: SerializerFunctionWrapHandler) -> Any:
        return omit_defaults(handler(self), {"prefetch": [], "device_labels": None})


class NodeMetrics(StrictModel):
    """Node-wide counters; ``*_total`` values are cumulative since boot (EVE's style)."""

    cpu_seconds_total: float = Field(ge=0, le=1e15)
    memory_used_bytes: int = Field(ge=0, le=MAX_COUNT)
    memory_total_bytes: int = Field(ge=0, le=MAX_COUNT)
    disk_used_bytes: int = Field(ge=0, le=MAX_COUNT)
    disk_total_bytes: int = Field(ge=0, le=MAX_COUNT)
    net_rx_bytes_total: int = Field(ge=0, le=MAX_COUNT)
    net_tx_bytes_total: int = Field(ge=0, le=MAX_COUNT)
    uptime_s: Duration


class AppMetrics(StrictModel):
    uuid: Uuid
    cpu_seconds_total: float = Field(ge=0, le=1e15)
    memory_used_bytes: int = Field(ge=0, le=MAX_COUNT)
    disk_used_bytes: int = Field(default=0, ge=0, le=MAX_COUNT)
    net_rx_bytes_total: int = Field(default=0, ge=0, le=MAX_COUNT)
    net_tx_bytes_total: int = Field(default=0, ge=0, le=MAX_COUNT)
    reported: AppReport | None = None
    """The latest metrics the app itself posted to its metadata service (fps, latency, …)."""


class MetricsMessage(StrictModel):
    """Lossy: a lost sample only makes the next interval longer (counters are cumulative)."""

    at: Timestamp
    node: NodeMetrics
    apps: list[AppMetrics] = Field(default_factory=list, max_length=256)


class LogLine(StrictModel):
    ts: Timestamp
    level: Annotated[str, StringConstraints(max_length=16)] = "INFO"
    msg: Annotated[str, StringConstraints(max_length=8192)]


MAX_LOG_BATCH_GZ = 512 * 1024
MAX_LOG_BATCH_LINES = 5000


class LogBatchMessage(StrictModel):
    """Log lines of one source, as base64 of gzip of JSON lines (one LogLine each)."""

    source: Annotated[str, StringConstraints(pattern=r"^(agent|app:[0-9a-f-]{36})$")]
    seq: int = Field(ge=0, le=MAX_COUNT)
    """Per-node sequence number of the batch: the controller drops a repeat."""
    lines_gz_b64: Annotated[str, StringConstraints(max_length=MAX_LOG_BATCH_GZ * 4 // 3 + 4)]
