"""The fleet's remote-access rules: one row, defaults until an admin changes them.

current(s)                 the policy in force (a detached copy of the defaults if unset)
update(s, actor, data)     validate, store, audit (admin)
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy.orm import Session

from controller.domain.common import Body, parse
from controller.store.audit import audit
from controller.store.models import RemotePolicy, utcnow

__all__ = ["PolicyBody", "current", "policy_view", "update"]

_ID = 1


class PolicyBody(Body):
    approval_sites: list[str] | None = Field(default=None, max_length=256)
    max_sessions_per_node: int | None = Field(default=None, ge=1, le=1000)
    max_sessions_per_actor: int | None = Field(default=None, ge=1, le=1000)
    idle_timeout_s: int | None = Field(default=None, ge=10, le=7 * 86400)
    max_grant_s: int | None = Field(default=None, ge=60, le=30 * 86400)
    max_recording_bytes: int | None = Field(default=None, ge=1024, le=2**40)


def _defaults() -> RemotePolicy:
    return RemotePolicy(
        id=_ID,
        approval_sites=[],
        max_sessions_per_node=16,
        max_sessions_per_actor=8,
        idle_timeout_s=900,
        max_grant_s=8 * 3600,
        max_recording_bytes=64 * 1024 * 1024,
        updated_at=utcnow(),
    )


def current(session: Session) -> RemotePolicy:
    found = session.get(RemotePolicy, _ID)
    return found if found is not None else _defaults()


def policy_view(policy: RemotePolicy) -> dict[str, Any]:
    return {
        "approval_sites": list(policy.approval_sites),
        "max_sessions_per_node": policy.max_sessions_per_node,
        "max_sessions_per_actor": policy.max_sessions_per_actor,
        "idle_timeout_s": policy.idle_timeout_s,
        "max_grant_s": policy.max_grant_s,
        "max_recording_bytes": policy.max_recording_bytes,
    }


def update(session: Session, actor: str, data: Any) -> RemotePolicy:
    body: PolicyBody = parse(PolicyBody, data)
    policy = session.get(RemotePolicy, _ID)
    if policy is None:
        policy = _defaults()
        session.add(policy)
    before = policy_view(policy)
    for name, value in body.model_dump(exclude_none=True).items():
        setattr(policy, name, sorted(set(value)) if name == "approval_sites" else value)
    policy.updated_at = utcnow()
    audit(
        session, actor, "remote.policy", "remote-policy", before=before, after=policy_view(policy)
    )
    return policy
