"""The git source the controller follows: set it, show it, stop following it.

set_source(s, actor, data)   → the source's status (a changed URL, branch or path
                               forgets the revision in force and the last refusal)
delete_source(s, actor)      its objects stay and become editable
git_status(s)                the source, its last sync and error, the objects it owns,
                             and each node's revision
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.domain.common import Body, parse
from controller.domain.status import reported_generation
from controller.errors import ApiError
from controller.store.audit import audit
from controller.store.models import GitObject, GitSource, Node, NodeRevision

__all__ = ["GitSourceBody", "delete_source", "git_status", "set_source"]

GitUrl = Annotated[
    str,
    StringConstraints(pattern=r"^(/|https?://|ssh://|git://|file://|[A-Za-z0-9._-]+@)[^\s]+$"),
]


def _no_dotdot(value: str) -> str:
    if ".." in value:
        raise ValueError("must not contain '..'")
    return value


GitRef = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}$"),
    AfterValidator(_no_dotdot),
]
SubPath = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]{0,255}$"), AfterValidator(_no_dotdot)
]


class GitSourceBody(Body):
    url: GitUrl = Field(max_length=2048)
    """A local path or a URL the controller can fetch (https, ssh, git, file)."""
    branch: GitRef = "main"
    path: SubPath = ""
    """Sub-folder of the repository that holds ``sites/``."""
    interval_s: int = Field(default=60, ge=0, le=86400)
    """Seconds between periodic syncs; 0 syncs only on demand."""


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def _node_revisions(s: Session) -> list[dict[str, Any]]:
    out = []
    for node in s.scalars(select(Node).where(Node.state == "registered").order_by(Node.serial)):
        reported = reported_generation(node)
        row = s.get(NodeRevision, (node.id, reported)) if reported >= 0 else None
        out.append(
            {
                "serial": node.serial,
                "generation": reported,
                "revision": row.revision if row else None,
            }
        )
    return out


def git_status(s: Session) -> dict[str, Any] | None:
    """The source, its last sync and error, the objects it owns and each node's revision."""
    src = s.get(GitSource, 1)
    if src is None:
        return None
    objects = s.scalars(select(GitObject).order_by(GitObject.kind, GitObject.name)).all()
    return {
        "url": src.url,
        "branch": src.branch,
        "path": src.path,
        "interval_s": src.interval_s,
        "revision": src.revision,
        "synced_at": _iso(src.synced_at),
        "attempted_at": _iso(src.attempted_at),
        "error_revision": src.error_revision,
        "errors": src.errors,
        "objects": [
            {"kind": o.kind, "name": o.name, "site": o.site, "file": o.file} for o in objects
        ],
        "nodes": _node_revisions(s),
    }


def set_source(s: Session, actor: str, data: Any) -> dict[str, Any]:
    body = parse(GitSourceBody, data)
    src = s.get(GitSource, 1)
    before = None
    if src is None:
        src = GitSource(id=1, url=body.url)
        s.add(src)
    else:
        before = {"url": src.url, "branch": src.branch, "path": src.path}
        if (src.url, src.branch, src.path) != (body.url, body.branch, body.path):
            src.revision, src.errors, src.error_revision = "", [], ""
    src.url, src.branch, src.path, src.interval_s = (
        body.url,
        body.branch,
        body.path,
        body.interval_s,
    )
    s.flush()
    audit(s, actor, "git.source", body.url, before=before, after=body.model_dump())
    status = git_status(s)
    assert status is not None
    return status


def delete_source(s: Session, actor: str) -> None:
    src = s.get(GitSource, 1)
    if src is None:
        raise ApiError(404, "not_found", "no git source is set")
    s.execute(delete(GitObject))
    audit(s, actor, "git.source.delete", src.url, before={"url": src.url, "branch": src.branch})
    s.delete(src)
