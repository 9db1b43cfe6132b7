"""Site policies: how the nodes a selector picks download images and switch versions.

A policy (``POST /api/v1/site-policies``, replaced by ``PUT …/<name>``) holds, for the
nodes its ``selector`` matches (empty: every node; device labels as ``device/<key>``):

    download_rate_bps   the total download rate of each group of nodes sharing the values
                        of ``group_by`` (default ``site``): every node of a group gets an
                        equal share, enforced by its agent (token bucket)
    download_window     when those nodes may download (the agent waits for it)
    switch_window       when a rollout may switch them to a new version (the engine waits)
    image_base_url      a datastore nearer them (a site cache node, any HTTP store laid out
                        as ``<base>/sha256/<digest>``): their image URLs point there; the
                        sha256 in the signed config still decides what is accepted

Several policies may match a node: for each field the one with the highest ``priority``
(then the name) that sets it wins.  :func:`resolve` gives a node's :class:`NodePolicy`;
``domain.desired`` puts its download part into the node's settings, the rollout engine
reads its switch window and rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.bodies import HTTP_HOST, NOT_IN_URL, LabelKey, LabelValue
from controller.domain.common import Body, changed, parse
from controller.domain.labels import effective_labels
from controller.errors import ApiError
from controller.store.audit import audit
from controller.store.models import Node, SitePolicy, utcnow
from protocol.desired_state import Name
from protocol.downloads import DownloadPolicy
from protocol.windows import Window

__all__ = [
    "NodePolicy",
    "SitePolicyBody",
    "SitePolicySpec",
    "create_policy",
    "delete_policy",
    "load_policies",
    "policy_json",
    "put_policy",
    "resolve",
]

MAX_RATE_BPS = 2.0**40
MIN_SHARE_BPS = 1024.0
_FIELDS = ("download_rate_bps", "download_window", "switch_window", "image_base_url")


class SitePolicySpec(Body):
    """A site policy's settings (``PUT /site-policies/<name>``)."""

    priority: int = Field(default=0, ge=-1000, le=1000)
    selector: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=16)
    """The nodes it applies to (every label must match; empty: every node)."""
    group_by: list[LabelKey] = Field(default_factory=lambda: ["site"], max_length=4)
    """Labels whose values make a group sharing ``download_rate_bps``."""
    download_rate_bps: float | None = Field(default=None, ge=MIN_SHARE_BPS, le=MAX_RATE_BPS)
    download_window: Window | None = None
    switch_window: Window | None = None
    image_base_url: (
        Annotated[
            str,
            StringConstraints(pattern=HTTP_HOST + rf"(/[^{NOT_IN_URL}?#]*)?$", max_length=1024),
        ]
        | None
    ) = None


class SitePolicyBody(SitePolicySpec):
    """A new site policy (``POST /site-policies``)."""

    name: Name


@dataclass(frozen=True)
class LoadedPolicy:
    name: str
    priority: int
    body: SitePolicyBody


@dataclass
class NodePolicy:
    """What applies to one node; ``sources`` names the policy behind each field."""

    download_rate_bps: float | None = None
    """The group's total cap."""
    group: tuple[str, ...] = ()
    """The node's values of the cap's ``group_by`` labels."""
    download_window: Window | None = None
    switch_window: Window | None = None
    image_base_url: str | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def share_bps(self, members: int) -> float | None:
        if self.download_rate_bps is None:
            return None
        return max(self.download_rate_bps / max(members, 1), MIN_SHARE_BPS)

    def downloads(self, members: int) -> DownloadPolicy | None:
        rate = self.share_bps(members)
        if rate is None and self.download_window is None:
            return None
        return DownloadPolicy(rate_bps=rate, window=self.download_window)


def load_policies(s: Session) -> list[LoadedPolicy]:
    """Every policy, in the order they win (priority high to low, then by name)."""
    rows = s.scalars(select(SitePolicy)).all()
    loaded = [
        LoadedPolicy(r.name, r.priority, SitePolicyBody.model_validate({**r.spec, "name": r.name}))
        for r in rows
    ]
    return sorted(loaded, key=lambda p: (-p.priority, p.name))


def _applies(policy: LoadedPolicy, labels: dict[str, Any]) -> bool:
    return all(labels.get(k) == v for k, v in policy.body.selector.items())


def resolve(policies: list[LoadedPolicy], labels: dict[str, Any]) -> NodePolicy:
    """The node's policy from the policies (in winning order) and its effective labels."""
    out = NodePolicy()
    for p in policies:
        if not _applies(p, labels):
            continue
        for name in _FIELDS:
            value = getattr(p.body, name)
            if value is None or name in out.sources:
                continue
            setattr(out, name, value)
            out.sources[name] = p.name
            if name == "download_rate_bps":
                out.group = tuple(str(labels.get(k, "")) for k in p.body.group_by)
    return out


def group_members(s: Session, policies: list[LoadedPolicy], node_policy: NodePolicy) -> int:
    """How many registered nodes share the node's download cap (its group of its policy)."""
    source = node_policy.sources.get("download_rate_bps")
    if source is None:
        return 1
    count = 0
    for node in s.scalars(select(Node).where(Node.state == "registered")):
        other = resolve(policies, effective_labels(node))
        if other.sources.get("download_rate_bps") == source and other.group == node_policy.group:
            count += 1
    return max(count, 1)


def policy_json(p: SitePolicy) -> dict[str, Any]:
    return {**p.spec, "name": p.name, "priority": p.priority,
            "updated_at": p.updated_at.isoformat() + "Z"}  # fmt: skip


def create_policy(s: Session, actor: str, data: Any) -> SitePolicy:
    """``POST /site-policies``: a new policy (409 if the name is taken). Audited; every
    node's config follows."""
    body = parse(SitePolicyBody, data)
    if s.scalar(select(SitePolicy).where(SitePolicy.name == body.name)) is not None:
        raise ApiError(409, "conflict", f"site policy {body.name!r} exists: PUT replaces it")
    row = SitePolicy(name=body.name)
    s.add(row)
    _store(row, body)
    s.flush()
    audit(s, actor, "site_policy.create", row.name, after=policy_json(row))
    changed(s)
    return row


def put_policy(s: Session, actor: str, name: str, data: Any) -> SitePolicy:
    """``PUT /site-policies/<name>``: replace a policy's settings (404 if there is none)."""
    body = parse(SitePolicySpec, data)
    row = _find(s, name)
    before = policy_json(row)
    _store(row, body)
    s.flush()
    audit(s, actor, "site_policy.update", name, before=before, after=policy_json(row))
    changed(s)
    return row


def _store(row: SitePolicy, body: SitePolicySpec) -> None:
    row.priority = body.priority
    row.spec = body.model_dump(mode="json", exclude={"name", "priority"})
    row.updated_at = utcnow()


def _find(s: Session, name: str) -> SitePolicy:
    row = s.scalar(select(SitePolicy).where(SitePolicy.name == name))
    if row is None:
        raise ApiError(404, "not_found", f"no site policy {name[:64]!r}")
    return row


def delete_policy(s: Session, actor: str, name: str) -> None:
    row = _find(s, name)
    audit(s, actor, "site_policy.delete", name, before=policy_json(row))
    s.delete(row)
    changed(s)
