"""A simulated device for controller tests: builds the signed requests a node sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attestation import envelope, pki


@dataclass
class SimDevice:
    serial: str
    onboarding: pki.Identity
    device: pki.Identity = field(default_factory=lambda: pki.make_device_cert("sim"))

    @classmethod
    def from_bundle(cls, bundle: Path, serial: str) -> SimDevice:
        return cls(serial, pki.load_identity(bundle / "onboarding.pem", bundle / "onboarding.key"))

    def register_body(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "serial": self.serial,
            "onboarding_cert_pem": self.onboarding.cert_pem(),
            "device_cert_pem": self.device.cert_pem(),
            "inventory": {"cpus": 2},
        }
        body.update(overrides)
        return envelope.seal(body, self.onboarding)

    def signed(self, body: dict[str, Any], **kw: Any) -> dict[str, str]:
        return envelope.seal(body, self.device, **kw)
