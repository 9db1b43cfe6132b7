"""``POST /api/v1/device/register`` checks (EVE's register semantics).

register answers: 201 new · 200 repeat with the identical device cert · 409 the
serial is bound to another device cert · 403 serial not claimed · 401 bad chain
or signature · 422 bad body.  A refused request changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from typing import Any

from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from attestation import pki
from controller.api.signed_request import open_request
from controller.domain.onboarding import NotClaimed
from controller.errors import ApiError
from controller.store.models import Node, utcnow
from controller.store.pki import ControllerPki
from protocol.bounded_json import load_json
from protocol.messages import RegisterRequest, RegisterResponse

__all__ = ["register_node"]

log = logging.getLogger(__name__)


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


def register_node(
    session: Session, ctl_pki: ControllerPki, wire: Any, max_skew_s: float
) -> tuple[int, RegisterResponse]:
    if not isinstance(wire, dict):
        raise ApiError(422, "bad_request", "register body must be a JSON envelope")
    try:
        onboarding_cert = pki.load_cert(_unverified_onboarding_cert(wire))
        pki.verify_chain(
            onboarding_cert, ctl_pki.onboarding_ca.cert, usage=ExtendedKeyUsageOID.CLIENT_AUTH
        )
    except pki.CertError as exc:
        raise ApiError(401, "bad_certificate", f"onboarding certificate refused: {exc}") from exc
    onboarding_hash = pki.cert_sha256(onboarding_cert)
    _opened, req = open_request(
        session,
        wire,
        lambda h: onboarding_cert if h == onboarding_hash else None,
        RegisterRequest,
        max_skew_s,
        unknown_signer_status=401,
    )
    try:
        device_cert = pki.load_cert(req.device_cert_pem)
        pki.verify_self_signed(device_cert)
    except pki.CertError as exc:
        raise ApiError(401, "bad_certificate", f"device certificate refused: {exc}") from exc
    device_hash = pki.cert_sha256(device_cert)

    node = session.scalar(select(Node).where(Node.serial == req.serial))
    if node is None:
        raise NotClaimed(req.serial, device_hash, onboarding_hash)
    if node.state == "registered":
        if node.device_cert_sha256 == device_hash:
            assert node.uuid is not None
            return 200, RegisterResponse(node_uuid=node.uuid)
        raise ApiError(409, "conflict", f"serial {req.serial!r} is bound to another device")
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
    log.info("node registered", extra={"serial": req.serial, "node_uuid": node.uuid})
    return 201, RegisterResponse(node_uuid=node.uuid)
