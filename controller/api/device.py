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
from typing import Any, TypeVar

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation import envelope
from controller.api.device_cache import CachedNode, DeviceCache, RecentIds
from controller.api.register import Refused, onboarding_cert, register_node
from controller.api.signed_request import open_request
from controller.domain import events
from controller.domain.common import changed
from controller.domain.desired import current_desired_state
from controller.domain.onboarding import NotClaimed, PendingLimits, record_pending, record_refusal
from controller.errors import ApiError
from controller.store.models import Node, NodeTrust, utcnow
from controller.store.notify import ConfigNotifier, WaitersFull
from controller.store.replay import remember_request
from controller.trust.signing import signing_certs
from controller.trust.state import last_signer, record_issued_config, token_sha256
from controller.web.body import json_body
from controller.web.context import current_services
from controller.web.telemetry import POLLS
from protocol.attest import TOKEN_HEADER
from protocol.desired_state import NodeSettings
from protocol.messages import ConfigRequest, ConfigResponse, InfoMessage

__all__ = ["device_api", "open_lossy_report", "open_node_request", "refuse_if_revoked"]

log = logging.getLogger(__name__)
LONG_POLL_RETRY_S = 30.0
"""What a node refused a long-poll (the process is full) is told to wait."""
device_api = Blueprint("device_api", __name__, url_prefix="/api/v1/device")
_CACHE_KEY = "outpost-device-cache"
_RECENT_KEY = "outpost-recent-poll-ids"
M = TypeVar("M", bound=BaseModel)


def refuse_if_revoked(session: Session, node: Node) -> None:
    trust = session.get(NodeTrust, node.id)
    if trust is not None and trust.revoked_at is not None:
        raise ApiError(403, "revoked", f"node {node.serial!r} has been revoked")


def _devices() -> DeviceCache:
    """This process's cache of polling nodes (made on first use)."""
    cache: DeviceCache | None = current_app.extensions.get(_CACHE_KEY)
    if cache is None:
        cache = current_app.extensions[_CACHE_KEY] = DeviceCache(current_services().notifier)
    return cache


def _open(session: Session, model: type[M], *, idle: bool) -> tuple[CachedNode, M, str]:
    """Verify the envelope against the registered nodes and validate its body.

    ``idle`` (config polls): single use of the request id checked in memory; otherwise
    recorded in the database.  A revoked node is refused (403) before anything is
    recorded for the request.  Returns the node's cache entry, the body and the signer's
    cert sha256."""
    svc = current_services()
    devices = _devices()
    wire = json_body()
    entries: dict[str, CachedNode] = {}

    def resolve(sha: str) -> Any:
        entry = devices.node(session, sha)
        if entry is None:
            return None
        entries[sha] = entry
        return entry.cert

    opened, body = open_request(
        session,
        wire,
        resolve,
        model,
        svc.settings.max_clock_skew_s,
        unknown_signer_status=403,
        remember=None if idle else remember_request,
    )
    entry = entries[opened.signer_sha256]
    if entry.revoked:
        raise ApiError(403, "revoked", f"node {entry.serial!r} has been revoked")
    if idle and not _recent(svc.settings.max_clock_skew_s).first_use(
        opened.request_id, opened.timestamp
    ):
        raise ApiError(401, "replayed", "request id already used")
    svc.writes.touch(entry.node_id)
    return entry, body, opened.signer_sha256


def _recent(skew_s: float) -> RecentIds:
    recent: RecentIds | None = current_app.extensions.get(_RECENT_KEY)
    if recent is None:
        recent = current_app.extensions[_RECENT_KEY] = RecentIds(skew_s)
    return recent


def open_lossy_report(session: Session, model: type[M]) -> tuple[int, M]:
    """A signed report the node does not resend (metrics): its node id and body."""
    entry, body, _sha = _open(session, model, idle=True)
    return entry.node_id, body


def open_node_request(session: Session, model: type[M]) -> tuple[Node, M]:
    """A signed device request that changes something: the node's row and the body."""
    entry, body, _sha = _open(session, model, idle=False)
    node = session.get(Node, entry.node_id)
    assert node is not None
    return node, body


@device_api.get("/certs")
def certs() -> ResponseReturnValue:
    """The controller's signing chain; the node checks it against its pinned root."""
    svc = current_services()
    return jsonify({"signing": signing_certs(svc), "root": svc.pki.root.cert_pem()})


@device_api.post("/register")
def register() -> ResponseReturnValue:
    svc = current_services()
    wire = json_body()
    cert = onboarding_cert(svc, wire)
    source = request.remote_addr or ""
    try:
        with svc.db.transaction() as session:
            status, resp = register_node(session, svc, cert, wire, source)
            node = session.scalar(select(Node).where(Node.uuid == resp.node_uuid))
            assert node is not None
            refuse_if_revoked(session, node)  # rolls the whole registration back
    except NotClaimed as exc:
        with svc.db.transaction() as session:  # the refused request itself changed no node
            limits = PendingLimits(
                svc.settings.max_pending_per_batch, svc.settings.max_pending_per_source
            )
            record_pending(session, exc.attempt, limits)
        raise
    except Refused as exc:
        with svc.db.transaction() as session:
            record_refusal(session, exc.attempt, exc.code, exc.message)
        raise
    return jsonify(resp.model_dump(mode="json", exclude_none=True)), status


@device_api.post("/config")
def config() -> ResponseReturnValue:
    """The node's config, or 'unchanged'; with ``wait_s`` held until a change (long-poll).

    An idle poll is answered from this process's memory (the node's cert, its live
    integrity token and the content hash of its desired state, all true as of the
    notifier's version for the node); the database is read only when something changed.
    The wait happens outside any transaction; when it ends, revocation and the token are
    checked again before anything is answered.
    """
    svc = current_services()
    devices = _devices()
    token = request.headers.get(TOKEN_HEADER) or ""
    with svc.db.transaction() as session:
        entry, req, sha = _open(session, ConfigRequest, idle=True)
        signed = _answer(session, devices, entry, sha, token, req.config_hash)
        since = entry.version
    deadline = time.monotonic() + req.wait_s
    while signed is None and _park(svc.notifier, entry.node_id, since, deadline - time.monotonic()):
        with svc.db.transaction() as session:
            found = devices.node(session, sha)
            if found is None:
                raise ApiError(403, "unknown_signer", "node is no longer registered")
            entry = found
            signed = _answer(session, devices, entry, sha, token, req.config_hash)
            since = entry.version
    if signed is None:
        POLLS.labels("unchanged").inc()
        return jsonify(ConfigResponse(unchanged=True).model_dump())
    POLLS.labels("config").inc()
    return jsonify(ConfigResponse(unchanged=False, config=signed).model_dump())


def _answer(
    session: Session, devices: DeviceCache, entry: CachedNode, sha: str, token: str, have: str
) -> dict[str, str] | None:
    """None (unchanged), or the signed config; refuses a revoked node or a dead token."""
    if entry.revoked:
        raise ApiError(403, "revoked", f"node {entry.serial!r} has been revoked")
    refused = devices.token_ok(session, entry, token_sha256(token)) if token else None
    if not token or refused is not None:
        code = refused or "integrity_token_missing"
        raise ApiError(403, code, "attest first: config needs a valid integrity token")
    if entry.content_hash is not None and devices.fresh(entry) and have == entry.content_hash:
        return None
    node = session.get(Node, entry.node_id)
    if node is None or node.state != "registered":
        raise ApiError(403, "unknown_signer", "node is no longer registered")
    fresh = devices.reload(session, node, sha)
    if fresh.revoked:
        raise ApiError(403, "revoked", f"node {entry.serial!r} has been revoked")
    signed, fresh.content_hash = _changed_config(session, node, have)
    return signed


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


def _changed_config(session: Session, node: Node, have: str) -> tuple[dict[str, str] | None, str]:
    """(the signed config if it differs from what the node has, the content hash)."""
    svc = current_services()
    doc = current_desired_state(
        session,
        node,
        svc.settings.public_url,
        NodeSettings(config_interval_s=svc.settings.node_config_interval_s),
        svc.download_key,
    )
    content_hash = doc.content_hash()
    signing = svc.pki.signing
    if have == content_hash and last_signer(session, node) in (signing.sha256, None):
        return None, content_hash
    signed = envelope.seal(doc.model_dump(mode="json"), signing)  # new, or re-signed
    record_issued_config(
        session,
        node,
        hashlib.sha256(base64.b64decode(signed["payload"])).hexdigest(),
        doc.generation,
        [app.image.sha256 for app in doc.apps],
        signer_sha256=signing.sha256,
    )
    return signed, content_hash


@device_api.post("/info")
def info() -> ResponseReturnValue:
    svc = current_services()
    with svc.db.transaction() as session:
        node, msg = open_node_request(session, InfoMessage)
        before = node.info
        node.info = msg.model_dump(mode="json", exclude={"inventory", "device_labels"})
        events.app_changes(session, node, before, node.info)
        node.info_at = utcnow()
        if msg.device_labels is not None and msg.device_labels != (node.device_labels or {}):
            node.device_labels = dict(msg.device_labels)  # selectors may now pick it
            changed(session, node)
        if msg.inventory is not None:
            inventory = msg.inventory.model_dump(mode="json")
            if node.inventory != inventory:  # stored (and written) only when it changed
                node.inventory = inventory
    return jsonify({"ok": True})
