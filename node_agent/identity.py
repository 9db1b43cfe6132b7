"""The node's identity: device key + self-signed cert (made once), onboarding, renewal.

Layout of ``<state_dir>/identity`` (0700): ``device.pem``, the pinned ``root-ca.pem``
copied from the onboarding bundle, and ``node.json`` holding the UUID the controller
assigned at registration.  The device key is either

- TPM-resident (``tpm.json`` names its persistent handle; the key never leaves the
  TPM and signs through it), when the agent has a TPM at first start, or
- ``device.key`` (0600), when it has none.

Renewal writes the new cert to ``device.next.pem`` first, then asks the controller,
then promotes it; a renewal interrupted half-way is finished at the next start.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from attestation import pki
from attestation.files import atomic_write
from attestation.tpm import DEVICE_KEY_HANDLE, Tpm
from node_agent.client import ControllerClient, ControllerError

__all__ = [
    "IdentityError",
    "NodeIdentity",
    "OnboardingRefused",
    "load_identity",
    "load_or_create_device",
    "onboard",
    "renew_if_due",
]

log = logging.getLogger(__name__)


class OnboardingRefused(Exception):
    """The controller said no; ``status`` tells why (403 not claimed, 409, 401, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class IdentityError(Exception):
    """The stored identity cannot be used (e.g. its key is in a TPM the agent lacks)."""


@dataclass(frozen=True)
class NodeIdentity:
    device: pki.Identity
    node_uuid: str
    root_ca: Path
    key_in_tpm: bool = False


def _dir(state_dir: Path) -> Path:
    d = state_dir / "identity"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    return d


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _device(d: Path, tpm: Tpm | None) -> pki.Identity | None:
    """The stored device identity, or None when none was made yet."""
    cert_path = d / "device.pem"
    if not cert_path.exists():
        return None
    if (d / "device.key").exists():
        return pki.load_identity(cert_path, d / "device.key")
    if not (d / "tpm.json").exists():
        raise IdentityError(f"{d}: device.pem has neither device.key nor tpm.json")
    if tpm is None:
        raise IdentityError("the device key is in a TPM but the agent has no TPM configured")
    cert = pki.load_cert(cert_path.read_bytes())
    key = tpm.device_key()
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise IdentityError(
            "the TPM's device key is not the one in device.pem (TPM cleared or replaced?):"
            " the node must be onboarded again"
        )
    return pki.Identity(cert, key)


def load_or_create_device(state_dir: Path, serial: str, tpm: Tpm | None = None) -> pki.Identity:
    d = _dir(state_dir)
    existing = _device(d, tpm)
    if existing is not None:
        return existing
    if tpm is not None:
        identity = pki.make_device_cert(serial, tpm.device_key())
        atomic_write(
            d / "tpm.json", json.dumps({"device_key_handle": hex(DEVICE_KEY_HANDLE)}).encode()
        )
        atomic_write(d / "device.pem", identity.cert_pem().encode())
        where = f"in the TPM ({tpm.kind})"
    else:
        identity = pki.make_device_cert(serial)
        pki.save_identity(identity, d / "device.pem", d / "device.key")
        where = "in a 0600 file"
    log.info("created device key %s", where, extra={"cert_sha256": identity.sha256})
    return identity


def load_identity(state_dir: Path, tpm: Tpm | None = None) -> NodeIdentity | None:
    """The onboarded identity, or None when the node has not registered yet."""
    d = state_dir / "identity"
    try:
        node = json.loads((d / "node.json").read_text())
    except FileNotFoundError:
        return None
    device = _device(d, tpm)
    if device is None:
        raise IdentityError(f"{d}: node.json without device.pem")
    in_tpm = not (d / "device.key").exists()
    return NodeIdentity(device, node["node_uuid"], d / "root-ca.pem", in_tpm)


def onboard(
    client: ControllerClient,
    state_dir: Path,
    bundle_dir: Path,
    serial: str,
    inventory: dict[str, Any],
    tpm: Tpm | None = None,
) -> NodeIdentity:
    """Register with the controller using the bundle's onboarding cert; idempotent."""
    d = _dir(state_dir)
    device = load_or_create_device(state_dir, serial, tpm)
    onboarding = pki.load_identity(bundle_dir / "onboarding.pem", bundle_dir / "onboarding.key")
    body = {
        "serial": serial,
        "onboarding_cert_pem": onboarding.cert_pem(),
        "device_cert_pem": device.cert_pem(),
        "inventory": {**inventory, "tpm": tpm.kind if tpm else "none"},
    }
    try:
        status, answer = client.register(onboarding, body)
    except ControllerError as exc:
        raise OnboardingRefused(exc.status, str(exc)) from exc
    atomic_write(d / "root-ca.pem", (bundle_dir / "root-ca.pem").read_bytes())
    atomic_write(d / "node.json", json.dumps({"node_uuid": answer["node_uuid"]}).encode())
    log.info("onboarded (%s)", "new" if status == 201 else "already registered")
    in_tpm = not (d / "device.key").exists()
    return NodeIdentity(device, answer["node_uuid"], d / "root-ca.pem", in_tpm)


def renew_if_due(
    client: ControllerClient,
    state_dir: Path,
    identity: NodeIdentity,
    serial: str,
    renew_before_days: int,
) -> NodeIdentity:
    """Renew the device cert (same key) when it expires within ``renew_before_days``.

    Raises ControllerError/Unreachable when the controller cannot take it now; the
    pending cert stays in ``device.next.pem`` and is tried again next time.
    """
    d = _dir(state_dir)
    pending = d / "device.next.pem"
    left = identity.device.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    if not pending.exists():
        if left > dt.timedelta(days=renew_before_days):
            return identity
        new = pki.make_device_cert(serial, identity.device.key)
        atomic_write(pending, new.cert_pem().encode())
    new_cert = pki.load_cert(pending.read_bytes())
    renewed = pki.Identity(new_cert, identity.device.key)
    body = {"device_cert_pem": renewed.cert_pem()}
    try:
        client.signed(identity.device, "renew", body)
    except ControllerError as exc:
        if exc.status != 403 or exc.code != "unknown_signer":
            raise
        client.signed(renewed, "renew", body)  # the controller already has the new cert
    atomic_write(d / "device.pem", renewed.cert_pem().encode())
    pending.unlink()
    log.info("device certificate renewed", extra={"cert_sha256": renewed.sha256})
    return NodeIdentity(renewed, identity.node_uuid, identity.root_ca, identity.key_in_tpm)
