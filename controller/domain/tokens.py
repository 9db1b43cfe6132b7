"""Operator API tokens and roles (admin > operator > viewer).

A token is ``op_<random>``; only its sha256 is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.store.models import ApiToken

__all__ = ["ROLES", "create_token", "has_role", "token_for"]

ROLES = ("viewer", "operator", "admin")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def has_role(role: str, needed: str) -> bool:
    """True when ``role`` is at least ``needed``."""
    return ROLES.index(role) >= ROLES.index(needed)


def create_token(session: Session, name: str, role: str) -> str:
    """Create a token and return its secret (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    secret = "op_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_sha256=_digest(secret), role=role))
    return secret


def token_for(session: Session, secret: str) -> ApiToken | None:
    """The stored token whose secret this is, or None."""
    digest = _digest(secret)
    token = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest))
    if token is None or not hmac.compare_digest(token.token_sha256, digest):
        return None
    return token
