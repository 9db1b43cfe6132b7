"""Agent settings: a validated model read from a YAML/JSON file and command-line flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from attestation.tpm_setting import parse_tpm_setting
from node_agent.ports import PortsSettings
from protocol.messages import Serial

__all__ = ["AgentSettings", "SettingsError", "load_settings"]


class SettingsError(Exception):
    pass


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path
    """Identity (0600 keys), checkpoint, image store and per-app directories."""
    bundle_dir: Path
    """Onboarding bundle: controller.json, root-ca.pem, onboarding.pem/.key."""
    serial: Serial
    """The serial an operator claims for this node."""
    libvirt_uri: str = "qemu:///system"
    hypervisor: Literal["auto", "kvm", "tcg"] = "auto"
    """auto probes KVM by booting a tiny guest and falls back to TCG."""
    podman: str = "podman"
    podman_global_args: list[str] = Field(default_factory=list)
    """Extra global podman flags (e.g. --root/--runroot for a private store)."""
    config_interval_s: float | None = Field(default=None, ge=0.2, le=86400)
    """Overrides the controller's poll interval (tests, demo)."""
    long_poll_s: float = Field(default=55.0, ge=0, le=120)
    """Config long-poll: the controller holds an 'unchanged' answer this long, so a change
    reaches the node in about a second. 0 polls every config interval instead."""
    reconcile_interval_s: float = Field(default=5.0, ge=0.2, le=3600)
    """How often actual state is re-read even without a new config (crash detection)."""
    http_timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_image_bytes: int = Field(default=8 * 1024**3, gt=0)
    pci_sysfs_root: Path = Path("/sys")
    """Where PCI devices and IOMMU groups are read (a fabricated tree in tests)."""
    tpm: str = "auto"
    """none | auto (/dev/tpmrm0 if present) | device:/dev/tpmrmN | swtpm:host=H,port=P.
    With a TPM the device key lives in it and every attestation sends a TPM quote."""
    log_ship_interval_s: float = Field(default=10.0, ge=0.2, le=3600)
    """How often new agent and app console log lines are batched and sent."""
    reboot_command: list[str] = Field(default_factory=list, max_length=16)
    """Run when the operator's reboot counter rises (e.g. ["/sbin/reboot"] on a real node);
    empty: the request is logged and acknowledged but the host is not rebooted."""
    ports: PortsSettings | None = None
    """Port lockdown (firewall, app networks, USB, console). Set on real nodes; leave unset
    for agents sharing a host namespace (tests, the demo), whose firewall it would replace."""
    device_cert_renew_days: int = Field(default=30, ge=1, le=36500)
    """Renew the self-signed device cert when it expires within this many days."""
    revoked_check_s: float = Field(default=600.0, ge=0.2, le=86400)
    """After the controller answered 403 "revoked": ask again only this often."""
    device_labels_file: Path | None = None
    """A YAML/JSON mapping of labels this node reports about itself (re-read each report)."""
    remote_access: bool = True
    """Take remote sessions the controller offers under its signed grants (the agent dials
    out; nothing listens). False: never poll for them."""
    remote_max_sessions: int = Field(default=16, ge=1, le=256)
    """Remote sessions open at once on this node (more offers are left unanswered)."""

    @field_validator("tpm")
    @classmethod
    def _tpm(cls, value: str) -> str:
        parse_tpm_setting(value if value != "auto" else "none")
        return value


def load_settings(path: Path | None, overrides: dict[str, object]) -> AgentSettings:
    """Merge a settings file (YAML or JSON) with non-None overrides and validate."""
    raw: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read agent settings {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: expected a mapping of settings")
        raw.update(loaded)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return AgentSettings.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid agent settings: {fields}") from exc
