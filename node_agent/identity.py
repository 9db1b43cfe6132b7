"""The node's identity: device key + self-signed cert (0600, made once), onboarding.

Layout of ``<state_dir>/identity`` (0700): ``device.pem``/``device.key``, the pinned
``root-ca.pem`` copied from the onboarding bundle, and ``node.json`` holding the
UUID the controller assigned at registration.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestation import pki
from attestation.files import atomic_write
from node_agent.client import ControllerClient, ControllerError

__all__ = ["NodeIdentity", "OnboardingRefused", "load_or_create_device", "onboard"]

log = logging.getLogger(__name__)


class OnboardingRefused(Exception):
    """The controller said no; ``status`` tells why (403 not claimed, 409, 401, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class NodeIdentity:
    device: pki.Identity
    node_uuid: str
    root_ca: Path


def _dir(state_dir: Path) -> Path:
    d = state_dir / "identity"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    return d


def load_or_create_device(state_dir: Path, serial: str) -> pki.Identity:
    d = _dir(state_dir)
    cert, key = d / "device.pem", d / "device.key"
    if cert.exists() and key.exists():
        return pki.load_identity(cert, key)
    identity = pki.make_device_cert(serial)
    pki.save_identity(identity, cert, key)
    log.info("created device key", extra={"serial": serial, "cert_sha256": identity.sha256})
    return identity


def load_identity(state_dir: Path) -> NodeIdentity | None:
    """The onboarded identity, or None when the node has not registered yet."""
    d = state_dir / "identity"
    try:
        node = json.loads((d / "node.json").read_text())
    except FileNotFoundError:
        return None
    device = pki.load_identity(d / "device.pem", d / "device.key")
    return NodeIdentity(device, node["node_uuid"], d / "root-ca.pem")


def onboard(
    client: ControllerClient,
    state_dir: Path,
    bundle_dir: Path,
    serial: str,
    inventory: dict[str, Any],
) -> NodeIdentity:
    """Register with the controller using the bundle's onboarding cert; idempotent."""
    d = _dir(state_dir)
    device = load_or_create_device(state_dir, serial)
    onboarding = pki.load_identity(bundle_dir / "onboarding.pem", bundle_dir / "onboarding.key")
    body = {
        "serial": serial,
        "onboarding_cert_pem": onboarding.cert_pem(),
        "device_cert_pem": device.cert_pem(),
        "inventory": inventory,
    }

    try:
        status, answer = client.register(onboarding, body)
    except ControllerError as exc:
        raise OnboardingRefused(exc.status, str(exc)) from exc
    atomic_write(d / "root-ca.pem", (bundle_dir / "root-ca.pem").read_bytes())
    atomic_write(d / "node.json", json.dumps({"node_uuid": answer["node_uuid"]}).encode())
    log.info("onboarded (%s)", "new" if status == 201 else "already registered")
    return NodeIdentity(device, answer["node_uuid"], d / "root-ca.pem")
