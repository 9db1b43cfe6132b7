"""Device trust endpoints (``/api/v1/device/``): ``attest`` and ``renew``.

``POST attest`` {"request": "nonce"} → a fresh single-use nonce; then {"request":
"quote", …} → EVE's result, with an integrity token on SUCCESS (see
``controller.trust.verifier``).  Results are answered with 200: the request
was understood, the result says what was decided.

``POST renew`` replaces the node's device certificate with a new self-signed one over
the same key, before the old one expires.  Both are signed by the node's current
device cert; revoked nodes get 403.
"""

from __future__ import annotations

import logging

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from attestation import pki
from controller.api.device import open_node_request
from controller.domain import events
from controller.errors import ApiError
from controller.store import notify
from controller.store.models import Node
from controller.trust.state import fleet_policy, issue_nonce, trust_of
from controller.trust.verifier import check_quote
from controller.web.context import current_services
from controller.web.telemetry import ATTESTATIONS
from protocol.attest import AttestRequest, AttestResult, NonceRequest, NonceResponse, RenewRequest

__all__ = ["attest_api"]

log = logging.getLogger(__name__)
attest_api = Blueprint("attest_api", __name__, url_prefix="/api/v1/device")


@attest_api.post("/attest")
def attest() -> ResponseReturnValue:
    with current_services().db.transaction() as session:
        node, req = open_node_request(session, AttestRequest)
        body = req.root
        if isinstance(body, NonceRequest):
            policy = fleet_policy(session)
            nonce = issue_nonce(session, node, policy.nonce_ttl_s)
            answer = NonceResponse(
                nonce=nonce,
                expires_in_s=policy.nonce_ttl_s,
                ak_enrolled=bool(trust_of(session, node).ak_name),
            )
            return jsonify(answer.model_dump(mode="json"))
        assert node.device_cert_pem is not None
        was = trust_of(session, node).state
        result = check_quote(session, node, body, pki.load_cert(node.device_cert_pem))
        if result.result != AttestResult.SUCCESS or was != "attested":  # news only
            events.attestation(session, node, str(result.result), result.reason)
    ATTESTATIONS.labels(str(result.result)).inc()
    return jsonify(result.model_dump(mode="json"))


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@attest_api.post("/renew")
def renew() -> ResponseReturnValue:
    """Swap in a renewed device cert (same key, later expiry); idempotent."""
    with current_services().db.transaction() as session:
        node, req = open_node_request(session, RenewRequest)
        assert node.device_cert_pem is not None
        current = pki.load_cert(node.device_cert_pem)
        try:
            new = pki.load_cert(req.device_cert_pem)
            pki.verify_self_signed(new)
        except pki.CertError as exc:
            raise ApiError(422, "bad_certificate", f"renewed certificate refused: {exc}") from exc
        new_sha = pki.cert_sha256(new)
        if new_sha == node.device_cert_sha256:
            return jsonify({"renewed": False, "device_cert_sha256": new_sha})
        if _spki(new) != _spki(current):
            raise ApiError(422, "bad_certificate", "a renewed certificate must keep the device key")
        if new.not_valid_after_utc < current.not_valid_after_utc:
            raise ApiError(422, "bad_certificate", "the renewed certificate expires earlier")
        if session.scalar(select(Node).where(Node.device_cert_sha256 == new_sha)) is not None:
            raise ApiError(409, "conflict", "that certificate is registered to another node")
        node.device_cert_pem = req.device_cert_pem
        node.device_cert_sha256 = new_sha
        notify.changed(session, node.id)  # every process forgets the old cert
        log.info("device certificate renewed", extra={"node_uuid": node.uuid})
    return jsonify({"renewed": True, "device_cert_sha256": new_sha})
