"""Remote access streams: the two WebSocket sides of a session and the node's requests.

    GET  /api/v1/remote/s/<id>/operator   WebSocket; first message {"ticket": …}
    GET  /api/v1/remote/s/<id>/agent      WebSocket; first message a signed AgentAttach
    POST /api/v1/remote/device/poll       the agent's long-poll for sessions (signed)
    POST /api/v1/remote/device/ended      the agent's word that a session ended (signed)

Both stream paths name the session at the same depth: behind several replicas the
balancer hashes ``/api/v1/remote/s/<id>`` (HAProxy ``balance uri depth 5``) so both sides
reach one replica (docs/deploy.md).  The WebSocket needs the production server
(gunicorn's gevent worker hands over the connection's socket); the handler runs the whole
session, then tells the worker the connection is taken (no HTTP answer is written).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from sqlalchemy.orm import Session

from controller.api.device_cache import CachedNode, DeviceCache, RecentIds
from controller.api.openapi import doc
from controller.api.signed_request import open_request
from controller.errors import ApiError
from controller.remote import relay, sessions, wakeups
from controller.remote.websocket import HandshakeRefused, ServerWebSocket
from controller.store.models import Node
from controller.store.notify import WaitersFull
from controller.store.replay import remember_request
from controller.web.body import json_body
from controller.web.context import current_services
from protocol.bounded_json import JsonRefused, load_json
from protocol.remote import AgentAttach, RemotePoll, SessionEnded

__all__ = ["remote_stream_api"]

remote_stream_api = Blueprint("remote_stream_api", __name__, url_prefix="/api/v1/remote")
M = TypeVar("M", bound=BaseModel)
_CACHE, _RECENT = "outpost-remote-devices", "outpost-remote-poll-ids"
POLL_RETRY_S = 30.0


class _TakenOver(Response):
    """The WebSocket handler used the connection: gunicorn must write nothing and close
    it (its async workers treat StopIteration from the app as "connection done")."""

    def __call__(self, environ: Any, start_response: Any) -> Any:
        raise StopIteration


def _upgrade() -> tuple[ServerWebSocket | None, Response]:
    sock = request.environ.get("gunicorn.socket")
    if sock is None:
        raise ApiError(
            400, "websocket_unsupported", "remote sessions need `outpost-controller serve`"
        )
    headers: Iterable[tuple[str, str]] = [
        (key[5:].replace("_", "-").title(), str(value))
        for key, value in request.environ.items()
        if key.startswith("HTTP_")
    ]
    try:
        ws = ServerWebSocket.accept(sock, request.full_path.rstrip("?"), headers)
    except HandshakeRefused:
        return None, _TakenOver()
    return ws, _TakenOver()


@remote_stream_api.route("/s/<session_id>/operator", websocket=True)
@doc("The operator's WebSocket of a session (first message: the session's ticket)")
def operator_stream(session_id: str) -> ResponseReturnValue:
    ws, done = _upgrade()
    if ws is not None:
        relay.operator_half(current_services(), ws, session_id)
    return done


@remote_stream_api.route("/s/<session_id>/agent", websocket=True)
@doc("The node's WebSocket of a session (first message: a signed attach)")
def agent_stream(session_id: str) -> ResponseReturnValue:
    ws, done = _upgrade()
    if ws is not None:
        relay.agent_half(current_services(), ws, session_id, _verify_attach(session_id))
    return done


# -- the node's signed requests ------------------------------------------------------------


def _app_cache(key: str, make: Any) -> Any:
    found = current_app.extensions.get(key)
    if found is None:
        found = current_app.extensions[key] = make()
    return found


def _open(session: Session, wire: Any, model: type[M], idle: bool) -> tuple[int, M]:
    """Verify a node's envelope: (node id, body). ``idle`` polls are checked for replay in
    memory (as config polls), the rest in the database."""
    svc = current_services()
    cache: DeviceCache = _app_cache(_CACHE, lambda: DeviceCache(svc.notifier))
    entries: dict[str, CachedNode] = {}

    def resolve(sha: str) -> Any:
        entry = cache.node(session, sha)
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
        remember=None if idle else remember_request,
    )
    entry = entries[opened.signer_sha256]
    if entry.revoked:
        raise ApiError(403, "revoked", f"node {entry.serial!r} has been revoked")
    recent: RecentIds = _app_cache(_RECENT, lambda: RecentIds(svc.settings.max_clock_skew_s))
    if idle and not recent.first_use(opened.request_id, opened.timestamp):
        raise ApiError(401, "replayed", "request id already used")
    return entry.node_id, body


def _verify_attach(session_id: str) -> Any:
    svc = current_services()

    def verify(text: str) -> int:
        try:
            wire = load_json(text.encode(), max_bytes=64 * 1024)
        except JsonRefused as exc:
            raise ApiError(422, "bad_request", f"attach: {exc.reason}") from exc
        with svc.db.transaction() as s:
            node_id, body = _open(s, wire, AgentAttach, idle=False)
        if body.session_id != session_id:
            raise ApiError(403, "foreign_session", "the attach names another session")
        return node_id

    return verify


@remote_stream_api.post("/device/poll")
def device_poll() -> ResponseReturnValue:
    """Sessions waiting for this node; held up to ``wait_s`` until one is offered."""
    svc = current_services()
    with svc.db.transaction() as s:
        node_id, body = _open(s, json_body(), RemotePoll, idle=True)
    key = wakeups.remote_key(node_id)
    deadline = time.monotonic() + body.wait_s
    while True:
        since = svc.notifier.version(key)
        with svc.db.transaction() as s:
            node = s.get(Node, node_id)
            if node is None:
                raise ApiError(403, "unknown_signer", "node is no longer registered")
            answer = sessions.poll_answer(s, node, list(body.open_sessions), svc.pki.signing)
        if answer.offers or answer.close:
            break
        try:
            if not wakeups.wait(svc.notifier, node_id, since, deadline - time.monotonic()):
                break
        except WaitersFull as exc:
            raise ApiError(
                503, "long_poll_full", f"{exc}; poll again later", retry_after_s=POLL_RETRY_S
            ) from exc
    return jsonify(answer.model_dump(mode="json"))


@remote_stream_api.post("/device/ended")
def device_ended() -> ResponseReturnValue:
    svc = current_services()
    with svc.db.transaction() as s:
        node_id, body = _open(s, json_body(), SessionEnded, idle=False)
        ended = sessions.agent_ended(s, node_id, body)
    return jsonify({"ended": ended})
