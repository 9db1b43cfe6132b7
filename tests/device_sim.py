"""A simulated device for controller tests: builds the signed requests a node sends."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from attestation import envelope, pki
from attestation.measurement import replay

SIM_AGENT_DIGEST = hashlib.sha256(b"simulated agent code").hexdigest()


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

    # -- attestation (as a node without a TPM: self-reported PCR 14) -------------------
    def attest(self, post: Callable[[str, Any], Any]) -> dict[str, str]:
        """Attest; returns the headers ``config`` requests need.

        ``post(path, envelope)`` sends one device request and returns its JSON answer.
        """
        nonce = post("attest", self.signed({"request": "nonce"}))["nonce"]
        events = [{"pcr": 14, "type": "agent", "digest": SIM_AGENT_DIGEST, "description": "sim"}]
        quote = {
            "request": "quote",
            "nonce": nonce,
            "tpm": "none",
            "pcrs": {"14": replay([SIM_AGENT_DIGEST]).hex()},
            "event_log": events,
        }
        answer = post("attest", self.signed(quote))
        assert answer["result"] == "SUCCESS", answer
        return {"Outpost-Integrity-Token": answer["integrity_token"]}

    def attest_with(self, client: Any) -> dict[str, str]:
        """Attest through a Flask test client."""
        return self.attest(lambda path, wire: client.post(f"/api/v1/device/{path}", json=wire).json)

    def attest_over_https(self, url: str, ca: str) -> dict[str, str]:
        """Attest against a served controller."""

        def post(path: str, wire: Any) -> Any:
            r = requests.post(f"{url}/api/v1/device/{path}", json=wire, verify=ca, timeout=30)
            r.raise_for_status()
            return r.json()

        return self.attest(post)


def registered(client: Any, headers: dict[str, str], bundle: Path, serial: str) -> SimDevice:
    """A simulated node claimed (unpinned: the fixtures' lenient controller) and registered
    through a Flask test client."""
    sim = SimDevice.from_bundle(bundle, serial)
    client.post("/api/v1/nodes/claim", json={"serial": serial}, headers=headers)
    r = client.post("/api/v1/device/register", json=sim.register_body())
    assert r.status_code == 201, r.json
    return sim
