"""Sessions: one console, exec, shell or forwarded connection under a grant.

    open_session(s, actor, role, data)  → (row, ticket): checks the grant, the caps; wakes
                                          the node, whose agent dials in
    attach_operator / attach_agent      the two sides of the relay arriving (single-use
                                        ticket; the node the session is for)
    relay_status(s, id)                 what the relay's watch checks (grant, close asked)
    end(s, id, reason, …)               once; audited with bytes and duration
    agent_ended(s, node_id, msg)        the node says it ended (its stream broke)
    sweep(s)                            sessions whose relay stopped beating end
    poll_answer(s, node, open, signing) offers for the node's agent, and what it must close

Session states: ``pending`` (made, waiting for both sides) → ``active`` (relaying) →
``closing`` (an operator asked it to close) → ``ended``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from attestation.pki import Identity
from controller.domain.common import Body, parse
from controller.domain.tokens import has_role
from controller.errors import ApiError, field_error
from controller.remote import grants as grant_rules
from controller.remote import policy as policy_rules
from controller.remote.recording import header
from controller.remote.wakeups import wake
from controller.store.audit import audit
from controller.store.models import Node, RemoteGrant, RemoteSession, utcnow
from protocol.remote import MAX_ARGS, RemotePollAnswer, SessionEnded, SessionOffer

__all__ = [
    "LIVE",
    "OPEN_TIMEOUT_S",
    "STALE_AFTER_S",
    "OpenBody",
    "RelayInfo",
    "agent_ended",
    "attach_agent",
    "attach_operator",
    "close_session",
    "end",
    "find_session",
    "list_sessions",
    "open_session",
    "poll_answer",
    "relay_status",
    "session_view",
    "sweep",
]

LIVE = ("pending", "active", "closing")
OPEN_TIMEOUT_S = 45.0
"""A session nobody attached to within this long ends."""
STALE_AFTER_S = 10.0
"""An active session whose relay wrote no heartbeat this long ends (its replica died)."""
RELAY_NAME = f"{socket.gethostname()}:{os.getpid()}"


class OpenBody(Body):
    grant: str = Field(min_length=1, max_length=64)
    command: list[str] = Field(default_factory=list, max_length=MAX_ARGS)
    tty: bool = True
    cols: int = Field(default=80, ge=1, le=1000)
    rows: int = Field(default=24, ge=1, le=500)
    port: int | None = Field(default=None, ge=1, le=65535)


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _live_count(session: Session, *where: Any) -> int:
    found = session.scalar(
        select(func.count()).select_from(RemoteSession).where(RemoteSession.state.in_(LIVE), *where)
    )
    return int(found or 0)


def open_session(session: Session, actor: str, role: str, data: Any) -> tuple[RemoteSession, str]:
    body: OpenBody = parse(OpenBody, data)
    grant = grant_rules.find_grant(session, body.grant)
    state = grant_rules.grant_state(grant)
    if state != "active":
        raise ApiError(409, f"grant_{state.replace('-', '_')}", f"grant {grant.uuid} is {state}")
    if actor != grant.grantee:
        raise ApiError(403, "not_grantee", f"grant {grant.uuid} is for {grant.grantee}")
    if not has_role(role, grant_rules.needed_role(grant.kind)):
        raise ApiError(403, "forbidden", f"a {grant.kind} session needs a higher role")
    if body.command and grant.kind != "exec":
        raise field_error("command", "only exec sessions run a command")
    port = body.port if body.port is not None else grant.forward_port
    if grant.kind == "forward" and port != grant.forward_port:
        raise field_error("port", f"the grant reaches port {grant.forward_port} only")
    sweep(session)
    rules = policy_rules.current(session)
    if _live_count(session, RemoteSession.node_id == grant.node_id) >= rules.max_sessions_per_node:
        raise ApiError(
            429, "too_many_sessions", f"the node has {rules.max_sessions_per_node} sessions open"
        )
    if _live_count(session, RemoteSession.actor == actor) >= rules.max_sessions_per_actor:
        raise ApiError(
            429, "too_many_sessions", f"you have {rules.max_sessions_per_actor} sessions open"
        )
    ticket = secrets.token_urlsafe(32)
    node = session.get(Node, grant.node_id)
    assert node is not None
    row = RemoteSession(
        uuid=str(uuid.uuid4()),
        grant_id=grant.id,
        node_id=grant.node_id,
        kind=grant.kind,
        app_name=grant.app_name,
        actor=actor,
        command=list(body.command),
        tty=body.tty,
        cols=body.cols,
        rows=body.rows,
        port=port if grant.kind == "forward" else None,
        state="pending",
        ticket_sha256=_sha(ticket),
        rendezvous_key=secrets.token_hex(32),
        recorded=grant.kind != "forward",
        created_at=utcnow(),
    )
    if row.recorded:
        title = f"{grant.kind} {node.serial}" + (f" {grant.app_name}" if grant.app_name else "")
        row.recording_header = header(body.cols, body.rows, utcnow().timestamp(), title)
    session.add(row)
    session.flush()
    audit(
        session,
        actor,
        "remote.session.open",
        row.uuid,
        grant=grant.uuid,
        node=node.serial,
        kind=grant.kind,
        app=grant.app_name or None,
        command=list(body.command) or None,
        port=row.port,
    )
    wake(session, grant.node_id)
    return row, ticket


def find_session(session: Session, session_id: str) -> RemoteSession:
    row = session.scalar(select(RemoteSession).where(RemoteSession.uuid == session_id))
    if row is None:
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    return row


@dataclass(frozen=True)
class RelayInfo:
    """What the relay of one session needs to know, read once at attach."""

    pk: int
    uuid: str
    node_id: int
    kind: str
    recorded: bool
    cols: int
    rows: int
    rendezvous_key: str
    expires_at: float
    idle_timeout_s: float
    max_recording_bytes: int


def _epoch(value: dt.datetime) -> float:
    return value.replace(tzinfo=dt.UTC).timestamp()


def attach_operator(session: Session, session_id: str, ticket: str) -> RelayInfo:
    """The operator's side arrives with the session's one-time ticket."""
    row = session.scalar(
        select(RemoteSession).where(RemoteSession.uuid == session_id).with_for_update()
    )
    if (
        row is None
        or not row.ticket_sha256
        or not hmac.compare_digest(row.ticket_sha256, _sha(ticket))
    ):
        raise ApiError(403, "bad_ticket", "unknown session or ticket already used")
    row.ticket_sha256 = ""
    if row.state != "pending":
        raise ApiError(409, "session_not_pending", f"session {session_id} is {row.state}")
    grant = session.get(RemoteGrant, row.grant_id)
    assert grant is not None
    if not grant_rules.usable(grant):
        raise ApiError(
            409, "grant_not_usable", f"grant {grant.uuid} is {grant_rules.grant_state(grant)}"
        )
    rules = policy_rules.current(session)
    row.state, row.relay, row.relay_seen_at = "active", RELAY_NAME, utcnow()
    return RelayInfo(
        pk=row.id,
        uuid=row.uuid,
        node_id=row.node_id,
        kind=row.kind,
        recorded=row.recorded,
        cols=row.cols,
        rows=row.rows,
        rendezvous_key=row.rendezvous_key,
        expires_at=_epoch(grant.expires_at),
        idle_timeout_s=float(rules.idle_timeout_s),
        max_recording_bytes=rules.max_recording_bytes,
    )


def attach_agent(session: Session, session_id: str, node_id: int) -> str:
    """The node's side arrives (its signature already checked): the rendezvous key."""
    row = find_session(session, session_id)
    if row.node_id != node_id:
        raise ApiError(403, "foreign_session", "this session is for another node")
    if row.state not in ("pending", "active"):
        raise ApiError(409, "session_not_live", f"session {session_id} is {row.state}")
    grant = session.get(RemoteGrant, row.grant_id)
    assert grant is not None
    if not grant_rules.usable(grant):
        raise ApiError(
            409, "grant_not_usable", f"grant {grant.uuid} is {grant_rules.grant_state(grant)}"
        )
    row.started_at = row.started_at or utcnow()
    return row.rendezvous_key


def relay_status(session: Session, session_pk: int) -> str | None:
    """None while the session may go on; else why it must end. Writes the heartbeat."""
    row = session.get(RemoteSession, session_pk)
    if row is None:
        return "the session was deleted"
    row.relay_seen_at = utcnow()
    if row.state == "closing":
        return row.end_reason or "closed by an operator"
    if row.state == "ended":
        return row.end_reason or "ended"
    grant = session.get(RemoteGrant, row.grant_id)
    if grant is None:
        return "the grant was deleted"
    state = grant_rules.grant_state(grant)
    if state == "revoked":
        return f"the grant was revoked by {grant.revoked_by}"
    if state == "expired":
        return "the grant expired"
    return None


def end(
    session: Session,
    session_pk: int,
    reason: str,
    *,
    exit_code: int | None = None,
    bytes_to_node: int | None = None,
    bytes_from_node: int | None = None,
    actor: str = "remote-relay",
) -> bool:
    """End the session once (False when it had ended already); audited."""
    row = session.get(RemoteSession, session_pk, with_for_update=True)
    if row is None or row.state == "ended":
        return False
    now = utcnow()
    row.state, row.ended_at, row.end_reason = "ended", now, reason[:500]
    row.ticket_sha256 = ""
    if exit_code is not None:
        row.exit_code = exit_code
    if bytes_to_node is not None:
        row.bytes_to_node = bytes_to_node
    if bytes_from_node is not None:
        row.bytes_from_node = bytes_from_node
    started = row.started_at or row.created_at
    audit(
        session,
        actor,
        "remote.session.end",
        row.uuid,
        reason=row.end_reason,
        kind=row.kind,
        by=row.actor,
        exit_code=row.exit_code,
        bytes_to_node=row.bytes_to_node,
        bytes_from_node=row.bytes_from_node,
        duration_s=round((now - started).total_seconds(), 3),
    )
    wake(session, row.node_id)
    return True


def close_session(session: Session, actor: str, role: str, session_id: str) -> RemoteSession:
    """An operator asks a live session to close (its relay ends it within a second)."""
    row = find_session(session, session_id)
    if actor != row.actor and not has_role(role, grant_rules.needed_role(row.kind)):
        raise ApiError(403, "forbidden", "closing this session needs its role")
    if row.state == "pending" or (row.state == "active" and not row.relay):
        end(session, row.id, f"closed by {actor}", actor=actor)
    elif row.state == "active":
        row.state, row.end_reason = "closing", f"closed by {actor}"
        audit(session, actor, "remote.session.close", row.uuid)
        wake(session, row.node_id)
    return row


def agent_ended(session: Session, node_id: int, msg: SessionEnded) -> bool:
    row = session.scalar(select(RemoteSession).where(RemoteSession.uuid == msg.session_id))
    if row is None or row.node_id != node_id:
        raise ApiError(404, "not_found", f"no session {msg.session_id} for this node")
    return end(
        session,
        row.id,
        f"the node ended it: {msg.reason}",
        exit_code=msg.exit_code,
        bytes_to_node=max(row.bytes_to_node, msg.bytes_to_node),
        bytes_from_node=max(row.bytes_from_node, msg.bytes_from_node),
        actor="node",
    )


def sweep(session: Session, stale_after_s: float = STALE_AFTER_S) -> int:
    """End sessions whose relay stopped beating (its process or replica died) and
    sessions nobody attached to in time.  Returns how many ended."""
    now = utcnow()
    stale = now - dt.timedelta(seconds=stale_after_s)
    never = now - dt.timedelta(seconds=OPEN_TIMEOUT_S)
    ended = 0
    for row in session.scalars(select(RemoteSession).where(RemoteSession.state.in_(LIVE))):
        if row.state == "pending" and row.created_at < never:
            ended += end(session, row.id, "nobody attached to the session in time")
        elif row.state != "pending" and row.relay_seen_at is not None and row.relay_seen_at < stale:
            ended += end(
                session,
                row.id,
                f"the controller process relaying it ({row.relay}) stopped; the recording "
                "holds everything shown until then",
            )
    return ended


def poll_answer(
    session: Session, node: Node, open_ids: list[str], signing: Identity
) -> RemotePollAnswer:
    """Sessions waiting for this node's agent (not already open there), and those of its
    open ones that ended or lost their grant."""
    since = utcnow() - dt.timedelta(seconds=OPEN_TIMEOUT_S)
    offers = []
    pending = session.scalars(
        select(RemoteSession).where(
            RemoteSession.node_id == node.id,
            RemoteSession.state.in_(("pending", "active")),
            RemoteSession.started_at.is_(None),
            RemoteSession.created_at > since,
        )
    )
    for row in pending:
        grant = session.get(RemoteGrant, row.grant_id)
        if row.uuid in open_ids or grant is None or not grant_rules.usable(grant):
            continue
        offers.append(
            SessionOffer(
                session_id=row.uuid,
                grant=grant_rules.signed_claims(grant, node, signing),
                kind=row.kind,  # type: ignore[arg-type]  # stored as validated text
                command=list(row.command),
                tty=row.tty,
                cols=row.cols,
                rows=row.rows,
                port=row.port,
            )
        )
    close = []
    if open_ids:
        rows = session.scalars(select(RemoteSession).where(RemoteSession.uuid.in_(open_ids)))
        for row in rows:
            grant = session.get(RemoteGrant, row.grant_id)
            if row.state in ("ended", "closing") or grant is None or not grant_rules.usable(grant):
                close.append(row.uuid)
    return RemotePollAnswer(offers=offers[:64], close=close[:256])


def list_sessions(
    session: Session, *, node_id: int | None = None, live_only: bool = False, limit: int = 200
) -> list[RemoteSession]:
    query = select(RemoteSession).order_by(RemoteSession.id.desc()).limit(limit)
    if node_id is not None:
        query = query.where(RemoteSession.node_id == node_id)
    if live_only:
        query = query.where(RemoteSession.state.in_(LIVE))
    return list(session.scalars(query))


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def session_view(row: RemoteSession, node: Node | None = None) -> dict[str, Any]:
    ended = row.ended_at or (utcnow() if row.state != "pending" else None)
    started = row.started_at or row.created_at
    return {
        "id": row.uuid,
        "node": node.serial if node is not None else None,
        "kind": row.kind,
        "app": row.app_name or None,
        "actor": row.actor,
        "command": list(row.command),
        "port": row.port,
        "state": row.state,
        "relay": row.relay or None,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
        "duration_s": round((ended - started).total_seconds(), 3) if ended else None,
        "end_reason": row.end_reason or None,
        "exit_code": row.exit_code,
        "bytes_to_node": row.bytes_to_node,
        "bytes_from_node": row.bytes_from_node,
        "recorded": row.recorded,
        "recording_bytes": row.recording_bytes,
        "attach_path": f"/api/v1/remote/s/{row.uuid}/operator",
    }
