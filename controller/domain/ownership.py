"""Objects the git source defines are read-only for the API and the UI (409 owned_by_git).

The sync itself acts as ``git:<revision>`` and passes; everyone else gets a message
naming the repository and the file to change instead.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.errors import ApiError
from controller.store.models import GitObject, GitSource

__all__ = ["GIT_ACTOR_PREFIX", "owner", "refuse_if_git_owned"]

GIT_ACTOR_PREFIX = "git:"


def owner(s: Session, kind: str, name: str) -> GitObject | None:
    return s.scalar(select(GitObject).where(GitObject.kind == kind, GitObject.name == name))


def refuse_if_git_owned(s: Session, actor: str, kind: str, name: str) -> None:
    """Raise 409 when ``kind``/``name`` is owned by the git source (unless git is acting)."""
    if actor.startswith(GIT_ACTOR_PREFIX):
        return
    obj = owner(s, kind, name)
    if obj is None:
        return
    source = s.get(GitSource, 1)
    where = f"{source.url} ({source.branch})" if source else "(removed)"
    raise ApiError(
        409,
        "owned_by_git",
        f"{kind.lower()} {name!r} is owned by git source {where}: change {obj.file}"
        " in the repository instead",
    )
