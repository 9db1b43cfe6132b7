"""Operator API authentication: a bearer token per request, the least role per route.

Handlers declare the least role they need with :func:`require_role`; the caller becomes
the request's actor (``token:<name>``), which the routes pass to the domain.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from controller.domain.tokens import ROLES, has_role, token_for
from controller.errors import ApiError
from controller.web.context import current_services

__all__ = ["caller_has", "require_role"]

F = TypeVar("F", bound=Callable[..., Any])


def require_role(role: str) -> Callable[[F], F]:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>")
            with current_services().db.transaction() as session:
                token = token_for(session, header.removeprefix("Bearer ").strip())
            if token is None:
                raise ApiError(401, "unauthenticated", "unknown token")
            if not has_role(token.role, role):
                raise ApiError(403, "forbidden", f"needs role {role}, token has {token.role}")
            g.actor = f"token:{token.name}"
            g.role = token.role
            return fn(*args, **kwargs)

        inner.__outpost_role__ = role  # type: ignore[attr-defined]
        return inner  # type: ignore[return-value]

    return wrap


def caller_has(role: str) -> bool:
    """Whether this request's token has at least ``role`` (after :func:`require_role`)."""
    return has_role(str(g.get("role", "")), role)
