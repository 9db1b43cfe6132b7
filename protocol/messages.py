"""Device API messages (the payload bodies inside signed envelopes)."""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from protocol.desired_state import Name, Sha256Hex, Uuid

Serial = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Pem = Annotated[str, StringConstraints(min_length=64, max_length=16384)]
ShortText = Annotated[str, StringConstraints(max_length=4096)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    ERROR = "ERROR"


class RegisterRequest(_Strict):
    """Signed with the onboarding key; carries both certificates in full."""

    serial: Serial
    onboarding_cert_pem: Pem
    device_cert_pem: Pem
    inventory: dict[str, Any] = Field(default_factory=dict)


class RegisterResponse(_Strict):
    node_uuid: Uuid


class ConfigRequest(_Strict):
    """The hash of the config the node holds ('' when it has none)."""

    config_hash: Annotated[str, StringConstraints(pattern=r"^([0-9a-f]{64})?$")] = ""


class ConfigResponse(_Strict):
    """Either ``unchanged`` or a config envelope signed by the config-signing key."""

    unchanged: bool
    config: dict[str, Any] | None = None


class AppStatus(_Strict):
    uuid: Uuid
    name: Name
    state: AppState
    error: ShortText = ""
    error_time: float | None = None
    image_sha256: Sha256Hex | None = None


class InfoMessage(_Strict):
    """Node and app states, as the agent sees them."""

    agent_version: Annotated[str, StringConstraints(max_length=64)]
    config_generation: int = Field(ge=-1)
    config_hash: Annotated[str, StringConstraints(pattern=r"^([0-9a-f]{64})?$")] = ""
    hypervisor: Annotated[str, StringConstraints(max_length=16)] = ""
    apps: list[AppStatus] = Field(default_factory=list, max_length=256)
