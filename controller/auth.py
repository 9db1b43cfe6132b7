"""Operator API tokens and roles (admin > operator > viewer).

A token is ``op_<random>``; only its sha256 is stored.  Handlers declare the
least role they need with :func:`require_role`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.db import ApiToken
from controller.errors import ApiError
from controller.services import current_services

__all__ = ["ROLES", "create_token", "require_role"]

ROLES = ("viewer", "operator", "admin")
F = TypeVar("F", bound=Callable[..., Any])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str) -> str:
    """Create a token and return its secret (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    secret = "op_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_sha256=_digest(secret), role=role))
    return secret


def require_role(role: str) -> Callable[[F], F]:
    needed = ROLES.index(role)

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>")
            digest = _digest(header.removeprefix("Bearer ").strip())
            svc = current_services()
            with svc.db.transaction() as session:
                token = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest))
            if token is None or not hmac.compare_digest(token.token_sha256, digest):
                raise ApiError(401, "unauthenticated", "unknown token")
            if ROLES.index(token.role) < needed:
                raise ApiError(403, "forbidden", f"needs role {role}, token has {token.role}")
            g.actor = f"token:{token.name}"
            return fn(*args, **kwargs)

        inner.__outpost_role__ = role  # type: ignore[attr-defined]
        return inner  # type: ignore[return-value]

    return wrap
