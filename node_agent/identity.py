"""The node's identity: device key + self-signed cert (made once), onboarding, renewal.

Layout of ``<state_dir>/identity`` (0700): ``device.pem``, the pinned ``root-ca.pem``
copied from the onboarding bundle, and ``node.json`` holding the UUID the controller
assigned at registration and the generation floor it gave (configs older than that are
refused while the node has no checkpoint).  With a TPM, register also carries the TPM's
EK certificate and AK (:mod:`node_agent.tpm_enrolment`) and the controller's credential
challenge is answered at once (the answer waits in ``credential.json`` for the first
quote).  The device key is either

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
from attestation.ek_cert import ek_fingerprint
from attestation.files import atomic_write
from attestation.tpm import DEVICE_KEY_HANDLE, Tpm, TpmError
from node_agent.client import ControllerClient, ControllerError
from node_agent.tpm_enrolment import PendingAnswer, answer_challenge, tpm_registration
from protocol.messages import RegisterResponse

__all__ = [
    "Fingerprints",
    "IdentityError",
    "NodeIdentity",
    "OnboardingRefused",
    "fingerprints",
    "load_identity",
    "load_or_create_device",
    "onboard",
    "renew_if_due",
]

log = logging.getLogger(__name__)


class OnboardingRefused(Exception):
    """The controller said no; ``status`` and ``code`` tell why (403 not claimed or
    revoked, 409, 401, 422)."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status, self.code = status, code


class IdentityError(Exception):
    """The stored identity cannot be used (e.g. its key is in a TPM the agent lacks)."""


@dataclass(frozen=True)
class NodeIdentity:
    device: pki.Identity
    node_uuid: str
    root_ca: Path
    key_in_tpm: bool = False
    generation_floor: int = 0
    """Configs older than this are refused while no checkpoint is held."""


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


@dataclass(frozen=True)
class Fingerprints:
    """What an operator pins in a claim: the node's device cert and TPM EK cert."""

    device_cert_sha256: str
    ek_cert_sha256: str | None
    """None: no TPM, or a TPM without an EK certificate."""


def fingerprints(state_dir: Path, serial: str, tpm: Tpm | None) -> Fingerprints:
    """The node's fingerprints; the device identity is made now if it was not yet (so
    what is printed is what register will send)."""
    device = load_or_create_device(state_dir, serial, tpm)
    ek_cert = tpm.ek_certificate() if tpm is not None else None
    return Fingerprints(device.sha256, ek_fingerprint(ek_cert) if ek_cert else None)


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
    floor = int(node.get("generation_floor", 0))
    return NodeIdentity(device, node["node_uuid"], d / "root-ca.pem", in_tpm, floor)


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
    body: dict[str, Any] = {
        "serial": serial,
        "onboarding_cert_pem": onboarding.cert_pem(),
        "device_cert_pem": device.cert_pem(),
        "inventory": {**inventory, "tpm": tpm.kind if tpm else "none"},
    }
    if tpm is not None:
        body["tpm"] = tpm_registration(tpm).model_dump(mode="json", exclude_none=True)
    try:
        status, answer = client.register(onboarding, body)
    except ControllerError as exc:
        raise OnboardingRefused(exc.status, str(exc), exc.code) from exc
    try:
        registered = RegisterResponse.model_validate(answer)
    except ValueError as exc:
        raise OnboardingRefused(502, f"the controller's register answer is invalid: {exc}") from exc
    if registered.credential is not None:
        if tpm is None:
            raise OnboardingRefused(502, "the controller sent a TPM challenge to a TPM-less node")
        try:
            PendingAnswer(state_dir).save(answer_challenge(tpm, registered.credential))
        except TpmError as exc:
            raise OnboardingRefused(403, f"credential challenge not answered: {exc}") from exc
    atomic_write(d / "root-ca.pem", (bundle_dir / "root-ca.pem").read_bytes())
    node = {"node_uuid": registered.node_uuid, "generation_floor": registered.generation_floor}
    atomic_write(d / "node.json", json.dumps(node).encode())
    log.info("onboarded (%s)", "new" if status == 201 else "already registered")
    in_tpm = not (d / "device.key").exists()
    return NodeIdentity(
        device, registered.node_uuid, d / "root-ca.pem", in_tpm, registered.generation_floor
    )


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
    return NodeIdentity(
        renewed,
        identity.node_uuid,
        identity.root_ca,
        identity.key_in_tpm,
        identity.generation_floor,
    )
