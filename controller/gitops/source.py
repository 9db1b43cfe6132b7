"""The git source the controller follows: set it, show it, stop following it.

set_source(s, actor, data)   → the source's status (a changed URL, branch or path
                               forgets the revision in force and the last refusal)
delete_source(s, actor)      its objects stay and become editable
git_status(s)                the source, its last sync and error, the objects it owns,
                             and each node's revision
fetch_url(source)            the URL git fetches (with the credentials kept apart)

Sources: ``https://``, ``ssh://`` (and scp-like ``user@host:path``), ``file://`` and
absolute local paths (read as ``file:``: the controller's own disk); ``http://``,
``git://`` and anything else are refused (no transport without integrity).  Credentials
in a URL (``https://user:token@host/…``) are split off when the source is set and kept
in their own column: the URL shown to viewers, kept in the audit log and in every answer
is the one without them.

``verify_signatures`` with an ``allowed_signers`` file (ssh keys, the format of git's
``gpg.ssh.allowedSignersFile``) makes every sync check the fetched commit with ``git
verify-commit``; an unsigned or wrongly signed commit is refused whole and the last good
revision stays.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.domain.bodies import NOT_IN_URL
from controller.domain.common import Body, parse
from controller.domain.status import reported_generation
from controller.errors import ApiError
from controller.store.audit import audit
from controller.store.models import GitObject, GitSource, Node, NodeRevision

__all__ = [
    "GitSourceBody",
    "delete_source",
    "fetch_url",
    "git_status",
    "set_source",
    "split_credentials",
]

GitUrl = Annotated[
    str,
    StringConstraints(
        pattern=rf"^(/|https://|ssh://|file://|[A-Za-z0-9._-]+@[^/:{NOT_IN_URL}]+:)"
        rf"[^{NOT_IN_URL}]+$"
    ),
]
"""https, ssh, scp-like ssh, file, or an absolute local path (taken as file:); no brackets
(an IPv6 literal host is not supported: name the host), no control characters or spaces
(:data:`~controller.domain.bodies.NOT_IN_URL`)."""
MAX_SIGNERS_BYTES = 64 * 1024
SIGNER_TEXT = r"[!-~]"
"""An allowed-signers file with something in it: a printable ASCII character (a key line
is all ASCII). The same test in the schema and here (``\\S`` differs between them)."""


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
    model_config = ConfigDict(
        json_schema_extra={  # verify_signatures: true needs allowed_signers
            "if": {
                "properties": {"verify_signatures": {"const": True}},
                "required": ["verify_signatures"],
            },
            "then": {
                "properties": {"allowed_signers": {"pattern": SIGNER_TEXT}},
                "required": ["allowed_signers"],
            },
            "x-rules": ["verify_signatures needs allowed_signers"],
        }
    )

    url: GitUrl = Field(max_length=2048)
    """A URL the controller can fetch (https, ssh, file) or an absolute local path."""
    branch: GitRef = "main"
    path: SubPath = ""
    """Sub-folder of the repository that holds ``sites/``."""
    interval_s: int = Field(default=60, ge=0, le=86400)
    """Seconds between periodic syncs; 0 syncs only on demand."""
    verify_signatures: bool = False
    """Apply only commits signed by a key of ``allowed_signers`` (git verify-commit)."""
    allowed_signers: str = Field(default="", max_length=MAX_SIGNERS_BYTES)
    """An ssh allowed-signers file: ``<principal> <key type> <key>`` per line."""

    @model_validator(mode="after")
    def _signers_with_verification(self) -> GitSourceBody:
        if self.verify_signatures and not re.search(SIGNER_TEXT, self.allowed_signers):
            raise ValueError("verify_signatures needs allowed_signers (the keys that may sign)")
        return self


def split_credentials(url: str) -> tuple[str, str]:
    """(the URL without secrets, the secret ``userinfo`` part or '').

    https: any userinfo is secret (a token often stands as the user name); ssh: only a
    password is (the user name, as in ``ssh://git@host/…``, stays)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "ssh") or "@" not in parts.netloc:
        return url, ""
    userinfo, _, host = parts.netloc.rpartition("@")
    if parts.scheme == "ssh" and ":" not in userinfo:
        return url, ""
    user = userinfo.split(":", 1)[0] if parts.scheme == "ssh" else ""
    netloc = f"{user}@{host}" if user else host
    return urlunsplit(parts._replace(netloc=netloc)), userinfo


def fetch_url(src: GitSource) -> str:
    """The URL to fetch: the shown one with the kept credentials put back."""
    if not src.credentials:
        return src.url
    parts = urlsplit(src.url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{src.credentials}@{host}"))


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


def _shown(src: GitSource) -> dict[str, Any]:
    """The source as shown and audited: no credentials, the signers by principal."""
    return {
        "url": src.url,
        "credentials": "set" if src.credentials else "none",
        "branch": src.branch,
        "path": src.path,
        "interval_s": src.interval_s,
        "verify_signatures": src.verify_signatures,
        "allowed_signers": [
            line.split()[0]
            for line in src.allowed_signers.splitlines()
            if line.strip() and not line.startswith("#")
        ],
    }


def git_status(s: Session) -> dict[str, Any] | None:
    """The source, its last sync and error, the objects it owns and each node's revision."""
    src = s.get(GitSource, 1)
    if src is None:
        return None
    objects = s.scalars(select(GitObject).order_by(GitObject.kind, GitObject.name)).all()
    return {
        **_shown(src),
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
    url, credentials = split_credentials(body.url)
    src = s.get(GitSource, 1)
    before = None
    if src is None:
        src = GitSource(id=1, url=url)
        s.add(src)
    else:
        before = _shown(src)
        if (src.url, src.credentials, src.branch, src.path) != (
            url,
            credentials,
            body.branch,
            body.path,
        ) or (src.verify_signatures, src.allowed_signers) != (
            body.verify_signatures,
            body.allowed_signers,
        ):
            src.revision, src.errors, src.error_revision = "", [], ""
    src.url, src.credentials, src.branch, src.path, src.interval_s = (
        url,
        credentials,
        body.branch,
        body.path,
        body.interval_s,
    )
    src.verify_signatures, src.allowed_signers = body.verify_signatures, body.allowed_signers
    s.flush()
    audit(s, actor, "git.source", url, before=before, after=_shown(src))
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
