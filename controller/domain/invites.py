"""Invitations: a user made without a password, and a one-time link to set it.

    invite_user(session, username, role, by) → the link's token (shown once; only its
                                               sha256 is stored; valid INVITE_TTL)
    invite_for(session, token)               → the pending invite, or None (used, expired,
                                               mistyped: the same answer)
    accept_invite(session, token, password)  → the user, whose password is now set; the
                                               invite is gone, so the link is dead

An invited user cannot log in (no password hash matches) until the link is used. The token
is never logged nor audited.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.domain.users import UserError, create_user, set_password
from controller.store.models import User, UserInvite, utcnow

__all__ = ["INVITE_TTL", "NO_PASSWORD", "accept_invite", "invite_for", "invite_user"]

INVITE_TTL = dt.timedelta(hours=24)
NO_PASSWORD = "!invited"
"""The hash of an invited user: no argon2 hash, so no password matches it."""


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite_user(
    session: Session, username: str, role: str, by: str, now: dt.datetime | None = None
) -> str:
    """Add ``username`` with ``role`` and no password; returns the link's token."""
    now = now or utcnow()
    session.execute(delete(UserInvite).where(UserInvite.expires_at < now))
    create_user(session, username, role)  # checks name and role; its password is discarded
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    user.password_hash = NO_PASSWORD
    token = secrets.token_urlsafe(32)
    session.add(
        UserInvite(
            token_sha256=_sha(token),
            user_id=user.id,
            created_by=by[:64],
            created_at=now,
            expires_at=now + INVITE_TTL,
        )
    )
    session.flush()
    return token


def invite_for(session: Session, token: str, now: dt.datetime | None = None) -> UserInvite | None:
    if not token or len(token) > 128:
        return None
    invite = session.get(UserInvite, _sha(token))
    if invite is None or invite.expires_at <= (now or utcnow()):
        return None
    return invite


def accept_invite(
    session: Session, token: str, password: str, now: dt.datetime | None = None
) -> User:
    """Set the invited user's password (the usual rules) and end the invite."""
    invite = invite_for(session, token, now)
    if invite is None:
        raise UserError(
            "this link is not valid: it was used already, it expired, or it is mistyped"
        )
    user = session.get(User, invite.user_id)
    assert user is not None
    set_password(session, user, password)
    session.delete(invite)
    session.flush()
    return user
