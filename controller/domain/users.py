"""Web UI users: accounts with argon2id password hashes, roles, server-side sessions.

    create_user(session, username, role) → generated password (shown once, never stored)
    authenticate(session, username, password) → LoginResult (user | throttled | refused)
    start_session / session_user / end_session   (a random token; only its sha256 is stored)

Roles are the operator API's (``controller.domain.tokens.ROLES``: viewer < operator < admin).
Unknown usernames cost the same argon2 verification as known ones; after
``FREE_FAILURES`` consecutive failures an account only accepts an attempt after a
growing delay (kept in the database, so every controller replica enforces it).
The tables live on ``controller.store.models.Base``; ``Database.create_schema`` creates them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.domain.tokens import ROLES, has_role
from controller.store.models import UiSession, User, utcnow

__all__ = [
    "FREE_FAILURES",
    "LoginResult",
    "UserError",
    "authenticate",
    "create_user",
    "end_session",
    "has_role",
    "retry_delay_s",
    "session_user",
    "set_password",
    "set_role",
    "start_session",
]

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 12
FREE_FAILURES = 5
MAX_DELAY_S = 300.0
SESSION_TTL = dt.timedelta(hours=12)
IDLE_TTL = dt.timedelta(hours=2)
_TOUCH_EVERY = dt.timedelta(minutes=1)
_hasher = PasswordHasher()  # argon2id, the library's (RFC 9106 low-memory) parameters


class UserError(ValueError):
    """A username, role or password that cannot be used."""


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    retry_after_s: float = 0.0
    """> 0 when the account is throttled (no password was checked)."""


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise UserError("a password is at most 1024 characters")


def create_user(session: Session, username: str, role: str, password: str | None = None) -> str:
    """Add a user; returns the password (generated when not given)."""
    if not USERNAME_RE.match(username):
        raise UserError("a username is 1-64 of a-z 0-9 . _ - starting with a letter or digit")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UserError(f"a user named {username!r} exists")
    password = password if password is not None else secrets.token_urlsafe(18)
    _check_password(password)
    session.add(User(username=username, password_hash=_hasher.hash(password), role=role))
    session.flush()
    return password


def set_password(session: Session, user: User, password: str) -> None:
    """Replace a user's password and end every session of theirs."""
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    session.execute(delete(UiSession).where(UiSession.user_id == user.id))


def set_role(session: Session, user: User, role: str) -> None:
    """Change a user's role; the last admin stays an admin (someone must manage users)."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if user.role == "admin" and role != "admin":
        admins = session.scalars(select(User.id).where(User.role == "admin")).all()
        if list(admins) == [user.id]:
            raise UserError(f"{user.username} is the last admin")
    user.role = role


def retry_delay_s(failures: int) -> float:
    """Seconds an account waits after ``failures`` consecutive failures (0 for the first few)."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(2.0 ** (failures - FREE_FAILURES), MAX_DELAY_S)


def authenticate(
    session: Session, username: str, password: str, now: dt.datetime | None = None
) -> LoginResult:
    """Check a login; always spends one argon2 verification unless the account is throttled."""
    now = now or utcnow()
    user = session.scalar(select(User).where(User.username == username[:64]))
    if user is not None and user.last_failed_at is not None:
        wait = retry_delay_s(user.failed_logins)
        left = (user.last_failed_at + dt.timedelta(seconds=wait) - now).total_seconds()
        if left > 0:
            return LoginResult(None, retry_after_s=left)
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password[:1024])
        ok = user is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if user is None:
        return LoginResult(None)
    if not ok:
        user.failed_logins += 1
        user.last_failed_at = now
        return LoginResult(None)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins, user.last_failed_at, user.last_login_at = 0, None, now
    return LoginResult(user)


def start_session(session: Session, user: User, now: dt.datetime | None = None) -> str:
    """A new session for ``user``; returns the token for the (signed) cookie."""
    now = now or utcnow()
    session.execute(delete(UiSession).where(UiSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    session.add(
        UiSession(
            token_sha256=_sha(token),
            user_id=user.id,
            created_at=now,
            last_seen=now,
            expires_at=now + SESSION_TTL,
        )
    )
    return token


def session_user(session: Session, token: str, now: dt.datetime | None = None) -> User | None:
    """The user of a live session (absolute and idle timeouts), else None."""
    now = now or utcnow()
    row = session.get(UiSession, _sha(token))
    if row is None or row.expires_at < now or row.last_seen + IDLE_TTL < now:
        return None
    if now - row.last_seen > _TOUCH_EVERY:
        row.last_seen = now
    return session.get(User, row.user_id)


def end_session(session: Session, token: str) -> None:
    session.execute(delete(UiSession).where(UiSession.token_sha256 == _sha(token)))
