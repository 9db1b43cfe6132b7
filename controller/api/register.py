"""``POST /api/v1/device/register`` checks (EVE's register semantics, identity bound).

register answers: 201 new · 200 repeat with the identical identity · 401 bad chain,
signature, or a certificate out of its validity dates (``cert_not_valid``) · 403
``batch_revoked`` (the onboarding batch was revoked) · 403 the TPM is refused
(``no_ek_cert``, ``ek_untrusted``, ``ek_mismatch``, ``bad_ak``, ``tpm_required``) · 403
``not_claimed`` (recorded as pending) · 403 ``identity_mismatch`` (the claim pinned
another device or EK certificate) · 403 ``claim_not_pinned`` (an unpinned claim while
the controller does not allow them) · 409 the serial is registered to another identity ·
422 bad body.  A refused request changes no node; refusals for claimed or registered
serials are audited (:class:`Refused` carries what to record after the rollback).

A new registration records the TPM identity (EK certificate fingerprint, EK and AK public
areas) and answers the credential challenge and the node's generation floor.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from attestation import pki
from controller.api.signed_request import open_request
from controller.domain.batches import batch_of
from controller.domain.onboarding import Attempt, NotClaimed
from controller.errors import ApiError
from controller.services import Services
from controller.store import notify
from controller.store.audit import audit, event
from controller.store.models import Node, NodeTrust, utcnow
from controller.trust.enrolment import EnrolmentRefused, TpmIdentity, check_tpm, enrol, re_enrol
from controller.trust.state import fleet_policy
from protocol.bounded_json import load_json
from protocol.messages import RegisterRequest, RegisterResponse

__all__ = ["Refused", "onboarding_cert", "register_node"]

log = logging.getLogger(__name__)


class Refused(ApiError):
    """A register refused for a claimed or registered serial: audited after the rollback."""

    def __init__(self, status: int, code: str, message: str, attempt: Attempt) -> None:
        super().__init__(status, code, message)
        self.attempt = attempt


def _unverified_onboarding_cert(wire: Any) -> str:
    """The onboarding cert PEM from a register payload, read before verification.

    Only used to find the key to verify with; nothing else is trusted until the
    signature and the chain have been checked.
    """
    try:
        inner = load_json(base64.b64decode(wire["payload"], validate=True))
        pem = inner["body"]["onboarding_cert_pem"]
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ApiError(422, "bad_request", "register body is not a signed envelope") from exc
    if not isinstance(pem, str):
        raise ApiError(422, "bad_request", "onboarding_cert_pem must be a string")
    return pem


def onboarding_cert(services: Services, wire: Any) -> x509.Certificate:
    """The register's onboarding cert, chained to the onboarding CA and in date (401),
    of a batch that is not revoked (403); a batch issued before batches were recorded is
    recorded now, in its own transaction."""
    if not isinstance(wire, dict):
        raise ApiError(422, "bad_request", "register body must be a JSON envelope")
    try:
        cert = pki.load_cert(_unverified_onboarding_cert(wire))
        pki.verify_chain(
            cert, services.pki.onboarding_ca.cert, usage=ExtendedKeyUsageOID.CLIENT_AUTH
        )
        pki.check_validity(cert, what="onboarding certificate")
    except pki.CertNotValid as exc:
        raise ApiError(401, "cert_not_valid", str(exc)) from exc
    except pki.CertError as exc:
        raise ApiError(401, "bad_certificate", f"onboarding certificate refused: {exc}") from exc
    with services.db.transaction() as s:
        batch = batch_of(s, cert)
        if batch.revoked_at is not None:
            raise ApiError(
                403, "batch_revoked", f"onboarding batch {batch.name!r} has been revoked"
            )
    return cert


def _device_cert(pem: str) -> x509.Certificate:
    try:
        cert = pki.load_cert(pem)
        pki.verify_self_signed(cert)
        pki.check_validity(cert, what="device certificate")
    except pki.CertNotValid as exc:
        raise ApiError(401, "cert_not_valid", str(exc)) from exc
    except pki.CertError as exc:
        raise ApiError(401, "bad_certificate", f"device certificate refused: {exc}") from exc
    return cert


def _check_claim(node: Node, attempt: Attempt, allow_unpinned: bool) -> None:
    """A claimed serial registers only with the identity its claim pinned."""
    pinned_device, pinned_ek = node.pinned_device_cert_sha256, node.pinned_ek_sha256
    if not pinned_device and not pinned_ek:
        if not allow_unpinned:
            raise Refused(
                403,
                "claim_not_pinned",
                f"serial {node.serial!r} was claimed without the node's fingerprint; claim it"
                " again with --device-cert (and --ek), or approve its pending registration",
                attempt,
            )
        return
    if pinned_device and pinned_device != attempt.device_hash:
        raise Refused(
            403,
            "identity_mismatch",
            f"serial {node.serial!r} is claimed for another device certificate",
            attempt,
        )
    if pinned_ek and pinned_ek != attempt.ek_hash:
        raise Refused(
            403, "identity_mismatch", f"serial {node.serial!r} is claimed for another TPM", attempt
        )


def register_node(
    session: Session,
    services: Services,
    cert: x509.Certificate,
    wire: Any,
    source: str,
) -> tuple[int, RegisterResponse]:
    """Register (see the module docstring); ``cert`` is :func:`onboarding_cert`'s."""
    onboarding_hash = pki.cert_sha256(cert)
    _opened, req = open_request(
        session,
        wire,
        lambda h: cert if h == onboarding_hash else None,
        RegisterRequest,
        services.settings.max_clock_skew_s,
        unknown_signer_status=401,
    )
    device_hash = pki.cert_sha256(_device_cert(req.device_cert_pem))
    try:
        identity = check_tpm(req.tpm, services.ek_bundle, fleet_policy(session).tpm_less)
    except EnrolmentRefused as exc:
        raise ApiError(403, exc.reason, str(exc)) from exc
    attempt = Attempt(req.serial, device_hash, identity.ek_sha256, onboarding_hash, source)
    node = session.scalar(select(Node).where(Node.serial == req.serial))
    if node is None:
        raise NotClaimed(attempt)
    if node.state == "registered":
        return _repeat(session, node, attempt, identity)
    _check_claim(node, attempt, services.settings.allow_unpinned_claims)
    if session.scalar(select(Node).where(Node.device_cert_sha256 == device_hash)) is not None:
        raise ApiError(409, "conflict", "device certificate already registered to another serial")
    # the claimed row becomes registered once: a concurrent register of the same serial
    # (another device cert) finds it no longer claimed and is refused, never both 201
    won = session.execute(
        update(Node).where(Node.id == node.id, Node.state == "claimed").values(state="registered")
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError(409, "conflict", f"serial {req.serial!r} was registered meanwhile")
    node.uuid = str(uuid.uuid4())
    node.state = "registered"
    node.device_cert_pem = req.device_cert_pem
    node.device_cert_sha256 = device_hash
    node.onboarding_cert_sha256 = onboarding_hash
    node.inventory = req.inventory.model_dump(mode="json")
    node.registered_at = node.last_seen = utcnow()
    challenge = enrol(session, node, identity)
    mode = "pinned" if node.pinned_device_cert_sha256 or node.pinned_ek_sha256 else "first"
    node.pinned_device_cert_sha256 = device_hash
    node.pinned_ek_sha256 = identity.ek_sha256
    event(session, node, "registered", f"device {device_hash[:16]}… ({mode} registration)")
    if mode == "first":
        audit(
            session,
            "device",
            "node.first_registration",
            node.serial,
            device_cert_sha256=device_hash,
            ek_sha256=identity.ek_sha256,
            source=source,
        )
    notify.changed(session, node.id)
    log.info("node registered", extra={"serial": req.serial, "node_uuid": node.uuid})
    return 201, RegisterResponse(
        node_uuid=node.uuid, generation_floor=node.config_generation, credential=challenge
    )


def _repeat(
    session: Session, node: Node, attempt: Attempt, identity: TpmIdentity
) -> tuple[int, RegisterResponse]:
    """A registered serial again: 403 ``revoked`` for a revoked node (whoever asks); 200
    for the same identity (a new challenge while the AK is not activated), else 409,
    audited."""
    trust = session.get(NodeTrust, node.id)
    if trust is not None and trust.revoked_at is not None:
        raise ApiError(403, "revoked", f"node {node.serial!r} has been revoked")
    if node.device_cert_sha256 != attempt.device_hash:
        raise Refused(
            409, "conflict", f"serial {node.serial!r} is bound to another device", attempt
        )
    try:
        challenge = re_enrol(session, node, identity)
    except EnrolmentRefused as exc:
        raise Refused(409, "conflict", str(exc), attempt) from exc
    assert node.uuid is not None
    return 200, RegisterResponse(
        node_uuid=node.uuid, generation_floor=node.config_generation, credential=challenge
    )
