"""Grants: who may open which kind of session on which node (and app), until when.

    create(s, actor, role, data)     operator for app consoles, exec and forwards; admin for
                                     a node shell; waits for a second person's approval when
                                     the node's ``site`` label is in the policy's list
    approve(s, actor, role, id)      by someone other than its creator and its grantee
    revoke(s, actor, role, id)       live sessions under it close within a second or two
    signed_claims(grant, node, key)  the envelope the agent verifies before opening anything

Every change is audited; a revocation wakes the node's relays (:mod:`wakeups`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation import envelope
from attestation.pki import Identity
from controller.domain.common import Body, parse
from controller.domain.tokens import has_role
from controller.errors import ApiError, field_error
from controller.remote import policy as policy_rules
from controller.remote.wakeups import wake
from controller.store.audit import audit
from controller.store.lookup import find_app, find_node
from controller.store.models import (
    ApiToken,
    App,
    Assignment,
    Node,
    RemoteGrant,
    User,
    utcnow,
)
from protocol.remote import GrantClaims

__all__ = [
    "GrantBody",
    "approve",
    "create",
    "find_grant",
    "grant_state",
    "grant_view",
    "list_grants",
    "needed_role",
    "revoke",
    "signed_claims",
    "usable",
]

APP_KINDS = {"console": "vm", "exec": "container", "forward": None}


class GrantBody(Body):
    node: str = Field(min_length=1, max_length=128)
    kind: Literal["console", "exec", "shell", "forward"]
    app: str | None = Field(default=None, max_length=63)
    duration_s: int = Field(default=3600, ge=60, le=30 * 86400)
    grantee: str | None = Field(default=None, max_length=160)
    """``user:<name>`` or ``token:<name>`` (default: whoever creates the grant)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """forward: the app port the grant reaches."""
    reason: str = Field(default="", max_length=500)
    reuse: bool = False
    """Answer a live grant with the same grantee, node, app, kind and port if one has a
    minute left (the CLI's repeated commands), instead of making another."""


def needed_role(kind: str) -> str:
    """The least role that may create, approve or use a grant of this kind."""
    return "admin" if kind == "shell" else "operator"


def grant_state(grant: RemoteGrant, now: dt.datetime | None = None) -> str:
    """revoked | expired | awaiting-approval | active."""
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at <= (now or utcnow()):
        return "expired"
    if grant.needs_approval and grant.approved_at is None:
        return "awaiting-approval"
    return "active"


def usable(grant: RemoteGrant) -> bool:
    return grant_state(grant) == "active"


def _role_of(session: Session, who: str) -> str | None:
    kind, _, name = who.partition(":")
    if kind == "user":
        user = session.scalar(select(User).where(User.username == name))
        return user.role if user else None
    if kind == "token":
        token = session.scalar(select(ApiToken).where(ApiToken.name == name))
        return token.role if token else None
    return None


def _app_for(session: Session, node: Node, body: GrantBody) -> App | None:
    if body.kind == "shell":
        if body.app:
            raise field_error("app", "a node shell is not in an app: leave app out")
        return None
    if not body.app:
        raise field_error("app", f"a {body.kind} grant names the app")
    app = find_app(session, body.app)
    wanted = APP_KINDS[body.kind]
    if wanted is not None and app.kind != wanted:
        raise field_error("app", f"{body.kind} needs a {wanted} app; {app.name} is a {app.kind}")
    assigned = session.scalar(
        select(Assignment).where(Assignment.node_id == node.id, Assignment.app_id == app.id)
    )
    if assigned is None:
        raise ApiError(409, "not_assigned", f"{app.name} does not run on {node.serial}")
    return app


def create(session: Session, actor: str, role: str, data: Any) -> RemoteGrant:
    body: GrantBody = parse(GrantBody, data)
    need = needed_role(body.kind)
    if not has_role(role, need):
        raise ApiError(403, "forbidden", f"a {body.kind} grant needs role {need}, you have {role}")
    if body.kind == "forward" and body.port is None:
        raise field_error("port", "a forward grant names the app port it reaches")
    if body.kind != "forward" and body.port is not None:
        raise field_error("port", "only a forward grant has a port")
    rules = policy_rules.current(session)
    if body.duration_s > rules.max_grant_s:
        raise field_error("duration_s", f"at most {rules.max_grant_s} s (the fleet's policy)")
    node = find_node(session, body.node)
    if node.uuid is None:
        raise ApiError(409, "not_registered", f"node {node.serial} has not onboarded yet")
    app = _app_for(session, node, body)
    grantee = body.grantee or actor
    grantee_role = role if grantee == actor else _role_of(session, grantee)
    if grantee_role is None:
        raise field_error("grantee", "name an existing user:<name> or token:<name>")
    if not has_role(grantee_role, need):
        raise field_error("grantee", f"{grantee} has role {grantee_role}; {body.kind} needs {need}")
    now = utcnow()
    if body.reuse:
        found = session.scalar(
            select(RemoteGrant)
            .where(
                RemoteGrant.node_id == node.id,
                RemoteGrant.kind == body.kind,
                RemoteGrant.grantee == grantee,
                RemoteGrant.app_uuid == (app.uuid if app else None),
                RemoteGrant.forward_port == body.port,
                RemoteGrant.revoked_at.is_(None),
                RemoteGrant.expires_at > now + dt.timedelta(seconds=60),
            )
            .order_by(RemoteGrant.expires_at.desc())
            .limit(1)
        )
        if found is not None:
            return found
    grant = RemoteGrant(
        uuid=str(uuid.uuid4()),
        node_id=node.id,
        app_uuid=app.uuid if app else None,
        app_name=app.name if app else "",
        kind=body.kind,
        forward_port=body.port,
        grantee=grantee,
        created_by=actor,
        reason=body.reason,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=body.duration_s),
        needs_approval=(node.labels or {}).get("site") in set(rules.approval_sites),
    )
    session.add(grant)
    session.flush()
    audit(session, actor, "remote.grant", grant.uuid, after=grant_view(grant, node))
    return grant


def find_grant(session: Session, grant_id: str) -> RemoteGrant:
    grant = session.scalar(select(RemoteGrant).where(RemoteGrant.uuid == grant_id))
    if grant is None:
        raise ApiError(404, "not_found", f"no grant {grant_id!r}")
    return grant


def approve(session: Session, actor: str, role: str, grant_id: str) -> RemoteGrant:
    grant = find_grant(session, grant_id)
    need = needed_role(grant.kind)
    if not has_role(role, need):
        raise ApiError(403, "forbidden", f"approving a {grant.kind} grant needs role {need}")
    if actor in (grant.created_by, grant.grantee):
        raise ApiError(403, "second_person", "a second person must approve this grant")
    state = grant_state(grant)
    if state != "awaiting-approval":
        raise ApiError(409, "not_awaiting_approval", f"grant {grant_id} is {state}")
    grant.approved_by, grant.approved_at = actor, utcnow()
    audit(session, actor, "remote.grant.approve", grant.uuid)
    wake(session, grant.node_id)
    return grant


def revoke(session: Session, actor: str, role: str, grant_id: str) -> RemoteGrant:
    grant = find_grant(session, grant_id)
    if actor != grant.grantee and not has_role(role, needed_role(grant.kind)):
        raise ApiError(403, "forbidden", f"revoking a {grant.kind} grant needs its role")
    if grant.revoked_at is None:
        grant.revoked_by, grant.revoked_at = actor, utcnow()
        audit(session, actor, "remote.grant.revoke", grant.uuid)
        wake(session, grant.node_id)  # the relays of its sessions close them now
    return grant


def list_grants(session: Session, live_only: bool = False, limit: int = 200) -> list[RemoteGrant]:
    query = select(RemoteGrant).order_by(RemoteGrant.id.desc()).limit(limit)
    if live_only:
        query = query.where(RemoteGrant.revoked_at.is_(None), RemoteGrant.expires_at > utcnow())
    return list(session.scalars(query))


def _epoch(value: dt.datetime) -> float:
    return value.replace(tzinfo=dt.UTC).timestamp()


def signed_claims(grant: RemoteGrant, node: Node, signing: Identity) -> dict[str, str]:
    """The grant as the envelope the agent verifies (config-signing key)."""
    assert node.uuid is not None
    claims = GrantClaims(
        grant_id=grant.uuid,
        node_uuid=node.uuid,
        kind=grant.kind,  # type: ignore[arg-type]  # stored as validated text
        app_uuid=grant.app_uuid,
        app_name=grant.app_name,
        grantee=grant.grantee,
        issued_at=_epoch(grant.created_at),
        expires_at=_epoch(grant.expires_at),
        forward_port=grant.forward_port,
    )
    return envelope.seal(claims.model_dump(mode="json"), signing)


def grant_view(grant: RemoteGrant, node: Node | None = None) -> dict[str, Any]:
    return {
        "id": grant.uuid,
        "node": node.serial if node is not None else None,
        "kind": grant.kind,
        "app": grant.app_name or None,
        "port": grant.forward_port,
        "grantee": grant.grantee,
        "created_by": grant.created_by,
        "reason": grant.reason,
        "created_at": grant.created_at.isoformat() + "Z",
        "expires_at": grant.expires_at.isoformat() + "Z",
        "state": grant_state(grant),
        "needs_approval": grant.needs_approval,
        "approved_by": grant.approved_by,
        "revoked_by": grant.revoked_by,
    }
