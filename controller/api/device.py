"""Device API blueprint (``/api/v1/device/``): signed envelopes in, JSON out.

Every call but ``certs`` and ``register`` is signed with the node's device key;
the signer is found by its cert hash among registered nodes (unknown → 403); a
revoked node gets 403 on every call, ``register`` included.  ``config`` also needs
the integrity token of a successful attestation (``Outpost-Integrity-Token``
header; missing, invalid or expired → 403, and the agent attests again).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation import envelope, pki
from controller.api.register import register_node
from controller.api.signed_request import open_request
from controller.domain.desired import current_desired_state
from controller.domain.onboarding import NotClaimed, record_pending
from controller.errors import ApiError
from controller.store.models import Node, NodeTrust, utcnow
from controller.store.notify import ConfigNotifier, WaitersFull
from controller.trust.state import check_token, record_issued_config
from controller.web.context import current_services
from protocol.attest import TOKEN_HEADER
from protocol.desired_state import NodeSettings
from protocol.messages import ConfigRequest, ConfigResponse, InfoMessage

__all__ = ["device_api", "open_node_request", "refuse_if_revoked"]

log = logging.getLogger(__name__)
LONG_POLL_RETRY_S = 30.0
"""What a node refused a long-poll (the process is full) is told to wait."""
device_api = Blueprint("device_api", __name__, url_prefix="/api/v1/device")


def _json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(422, "bad_request", "body must be JSON")
    return body


def refuse_if_revoked(session: Session, node: Node) -> None:
    trust = session.get(NodeTrust, node.id)
    if trust is not None and trust.revoked_at is not None:
        raise ApiError(403, "revoked", f"node {node.serial!r} has been revoked")


def open_node_request(session: Session, model: type[BaseModel]) -> tuple[Node, Any]:
    """Verify the envelope against registered nodes and validate its body.

    A revoked node is refused (403) before anything is recorded for the request.
    """
    svc = current_services()
    wire = _json_body()

    def resolve(sha: str) -> Any:
        node = session.scalar(
            select(Node).where(Node.device_cert_sha256 == sha, Node.state == "registered")
        )
        return pki.load_cert(node.device_cert_pem) if node and node.device_cert_pem else None

    opened, body = open_request(
        session, wire, resolve, model, svc.settings.max_clock_skew_s, unknown_signer_status=403
    )
    node = session.scalar(select(Node).where(Node.device_cert_sha256 == opened.signer_sha256))
    assert node is not None
    refuse_if_revoked(session, node)
    node.last_seen = utcnow()
    return node, body


@device_api.get("/certs")
def certs() -> ResponseReturnValue:
    """The controller's signing chain; the node checks it against its pinned root."""
    ctl_pki = current_services().pki
    return jsonify({"signing": [ctl_pki.signing.cert_pem()], "root": ctl_pki.root.cert_pem()})


@device_api.post("/register")
def register() -> ResponseReturnValue:
    svc = current_services()
    try:
        with svc.db.transaction() as session:
            status, resp = register_node(
                session, svc.pki, _json_body(), svc.settings.max_clock_skew_s
            )
            node = session.scalar(select(Node).where(Node.uuid == resp.node_uuid))
            assert node is not None
            refuse_if_revoked(session, node)  # rolls the whole registration back
    except NotClaimed as exc:
        with svc.db.transaction() as session:  # the refused request itself changed no node
            record_pending(session, exc)
        raise
    return jsonify(resp.model_dump()), status


@device_api.post("/config")
def config() -> ResponseReturnValue:
    """The node's config, or 'unchanged'; with ``wait_s`` held until a change (long-poll).

    The wait happens outside any transaction: a wake-up from the notifier only means
    "look again", so the answer is recomputed from the database each time.
    """
    svc = current_services()
    with svc.db.transaction() as session:
        node, req = open_node_request(session, ConfigRequest)
        refused = check_token(session, node, request.headers.get(TOKEN_HEADER))
        if refused is not None:
            raise ApiError(403, refused, "attest first: config needs a valid integrity token")
        node_id = node.id
        since = svc.notifier.version(node_id)
        signed = _changed_config(session, node, req.config_hash)
    deadline = time.monotonic() + req.wait_s
    while signed is None and _park(svc.notifier, node_id, since, deadline - time.monotonic()):
        with svc.db.transaction() as session:
            since = svc.notifier.version(node_id)
            again = session.get(Node, node_id)
            if again is None or again.state != "registered":
                raise ApiError(403, "unknown_signer", "node is no longer registered")
            signed = _changed_config(session, again, req.config_hash)
    if signed is None:
        return jsonify(ConfigResponse(unchanged=True).model_dump())
    return jsonify(ConfigResponse(unchanged=False, config=signed).model_dump())


def _park(notifier: ConfigNotifier, node_id: int, since: int, timeout: float) -> bool:
    """Wait for a change of the node's config; 503 when this process holds its maximum."""
    if timeout <= 0:
        return False
    try:
        return notifier.wait(node_id, since, timeout)
    except WaitersFull as exc:
        raise ApiError(
            503, "long_poll_full", f"{exc}; poll again later", retry_after_s=LONG_POLL_RETRY_S
        ) from exc


def _changed_config(session: Session, node: Node, have: str) -> dict[str, str] | None:
    """The signed config if it differs from what the node has (recorded as issued)."""
    svc = current_services()
    doc = current_desired_state(
        session,
        node,
        svc.settings.public_url,
        NodeSettings(config_interval_s=svc.settings.node_config_interval_s),
    )
    if have == doc.content_hash():
        return None
    signed = envelope.seal(doc.model_dump(mode="json"), svc.pki.signing)
    record_issued_config(
        session,
        node,
        hashlib.sha256(base64.b64decode(signed["payload"])).hexdigest(),
        doc.generation,
        [app.image.sha256 for app in doc.apps],
    )
    return signed


@device_api.post("/info")
def info() -> ResponseReturnValue:
    svc = current_services()
    with svc.db.transaction() as session:
        node, msg = open_node_request(session, InfoMessage)
        node.info = msg.model_dump(mode="json", exclude={"inventory"})
        node.info_at = utcnow()
        if msg.inventory is not None:
            inventory = msg.inventory.model_dump(mode="json")
            if node.inventory != inventory:  # stored (and written) only when it changed
                node.inventory = inventory
    return jsonify({"ok": True})
