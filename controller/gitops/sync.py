"""One sync of the git source: fetch, validate every manifest, apply in one transaction.

    sync(services) → SyncResult

A revision is applied whole or not at all: schema errors (file, line, reason) are
found before anything is written; the API's own refusals while applying (an unknown
image, a kind change …) roll the transaction back and are reported on the line of the
offending field.  The refused revision and its errors are stored; the last good
revision stays in force.  Objects the repository no longer defines are deleted (apps,
unused networks) or released (nodes keep their labels).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain import apps, networks, nodes, onboarding
from controller.domain.bodies import AppBody
from controller.domain.common import changed
from controller.domain.ownership import GIT_ACTOR_PREFIX
from controller.domain.views import app_json
from controller.errors import ApiError
from controller.gitops import repo
from controller.gitops.manifests import (
    Document,
    ManifestError,
    ManifestErrorList,
    SiteSet,
    api_error_lines,
    load_sites,
)
from controller.gitops.source import fetch_url
from controller.rollouts.service import rollback as rollback_rollout
from controller.rollouts.service import start as start_rollout
from controller.services import Services
from controller.store.audit import audit
from controller.store.models import (
    ACTIVE,
    App,
    GitObject,
    GitSource,
    Image,
    Network,
    Node,
    Rollout,
    utcnow,
)

__all__ = ["SyncResult", "sync"]

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    revision: str = ""
    applied: bool = False
    """True when this sync put a new revision in force."""
    changes: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "applied": self.applied,
            "changes": self.changes,
            "errors": self.errors,
        }


class _Refused(Exception):
    def __init__(self, errors: list[ManifestError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def sync(services: Services, force: bool = False) -> SyncResult:
    """Fetch and apply the source's branch (needs an app context); never raises for
    a bad repository — the result (and the source row) carries the errors."""
    with services.git_sync_lock:
        return _sync(services, force)


def _sync(services: Services, force: bool) -> SyncResult:
    with services.db.transaction() as s:
        source = s.get(GitSource, 1)
        if source is None:
            raise ApiError(409, "no_git_source", "no git source is set (PUT /git/source)")
        url, branch, sub, current = fetch_url(source), source.branch, source.path, source.revision
        refused, errors = source.error_revision, list(source.errors or [])
        signers = source.allowed_signers if source.verify_signatures else None
    cache = services.settings.data_dir / "git-cache" / _cache_name(source.url, branch)
    sha = ""
    try:
        sha = repo.fetch(url, branch, cache)
        if sha == current and not force:
            _record(services, sha, [])
            return SyncResult(revision=sha)
        if sha == refused and not force:  # refused already: not fetched and parsed again
            _touch(services)
            return SyncResult(revision=current, errors=errors)
        if signers is not None:
            repo.verify_commit(cache, sha, signers)
        files = repo.read_tree(cache, sha, sub)
        sites = load_sites(files)
    except repo.GitError as exc:
        return _refuse(services, sha, [ManifestError("", 0, str(exc))])
    except ManifestErrorList as exc:
        return _refuse(services, sha, exc.errors)
    actor = f"{GIT_ACTOR_PREFIX}{sha[:12]}"
    try:
        with services.db.transaction() as s:
            if s.get_bind().dialect.name != "sqlite":  # replicas: one applies at a time
                s.get(GitSource, 1, with_for_update=True)
            changes = _apply(s, actor, sites, sha, services.settings.allow_unpinned_claims)
            source = s.get(GitSource, 1)
            assert source is not None
            source.revision, source.synced_at, source.attempted_at = sha, utcnow(), utcnow()
            source.errors, source.error_revision = [], ""
            audit(s, actor, "git.sync", sha, changes=changes[:100])
            changed(s)
    except _Refused as exc:
        return _refuse(services, sha, exc.errors)
    log.info("git source at %s applied (%d changes)", sha[:12], len(changes))
    return SyncResult(revision=sha, applied=True, changes=changes)


def _cache_name(url: str, branch: str) -> str:
    return hashlib.sha256(f"{url}\0{branch}".encode()).hexdigest()[:16]


def _touch(services: Services) -> None:
    with services.db.transaction() as s:
        source = s.get(GitSource, 1)
        if source is not None:
            source.attempted_at = utcnow()


def _record(services: Services, sha: str, errors: list[ManifestError]) -> None:
    with services.db.transaction() as s:
        source = s.get(GitSource, 1)
        if source is None:
            return
        source.attempted_at = utcnow()
        if errors:
            source.errors = [e.as_json() for e in errors[:50]]
            source.error_revision = sha
        else:  # the branch is at the revision in force (e.g. a bad commit was reverted)
            source.synced_at, source.errors, source.error_revision = utcnow(), [], ""


def _refuse(services: Services, sha: str, errors: list[ManifestError]) -> SyncResult:
    _record(services, sha, errors)
    with services.db.transaction() as s:
        audit(
            s,
            f"{GIT_ACTOR_PREFIX}{sha[:12]}",
            "git.refused",
            sha or "(fetch)",
            errors=[e.as_json() for e in errors[:20]],
        )
    log.warning("git revision %s refused: %s", sha[:12] or "(fetch)", errors[0])
    with services.db.transaction() as s:
        source = s.get(GitSource, 1)
        revision = source.revision if source else ""
    return SyncResult(revision=revision, errors=[e.as_json() for e in errors])


def _guarded(doc: Document, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ApiError as exc:
        raise _Refused(api_error_lines(doc, exc)) from exc


def _apply(s: Session, actor: str, sites: SiteSet, sha: str, unpinned: bool) -> list[str]:
    changes: list[str] = []
    owned: dict[tuple[str, str], Document] = {}
    for doc in sites.of_kind("Network"):
        done = _guarded(doc, networks.put_network, s, actor, doc.spec)
        changes += [f"network/{doc.spec.name} {done}"] if done else []
        owned[("Network", doc.spec.name)] = doc
    for serial, (doc, labels, settings) in _memberships(s, sites).items():
        changes += _guarded(doc, _apply_node, s, actor, doc, serial, labels, settings, unpinned)
        owned[("Node", serial)] = doc
    rollouts = {d.spec.app: d for d in sites.of_kind("Rollout")}
    for doc in sites.of_kind("App"):
        selector = sites.selectors[doc.site]
        changes += _apply_app(s, actor, doc, selector, rollouts.get(doc.spec.name))
        owned[("App", doc.spec.name)] = doc
    changes += _drop_unowned(s, actor, owned)
    for (kind, name), doc in owned.items():
        row = s.scalar(select(GitObject).where(GitObject.kind == kind, GitObject.name == name))
        if row is None:
            row = GitObject(kind=kind, name=name)
            s.add(row)
        row.site, row.file, row.revision = doc.site, doc.file, sha
    s.flush()
    return changes


def _memberships(
    s: Session, sites: SiteSet
) -> dict[str, tuple[Document, dict[str, str], dict[str, Any] | None]]:
    """serial → (document, labels, settings) the repository gives the node."""
    out: dict[str, tuple[Document, dict[str, str], dict[str, Any] | None]] = {}
    for doc in sites.of_kind("Site"):
        for serial in doc.spec.nodes:
            node = s.scalar(select(Node).where(Node.serial == serial))
            current = dict(node.labels or {}) if node is not None else {}
            out[serial] = (doc, {**current, **sites.selectors[doc.site]}, None)
    for doc in sites.of_kind("Node"):
        labels = {**(doc.spec.labels or {}), **sites.selectors[doc.site]}
        settings = doc.spec.settings
        out[doc.spec.serial] = (
            doc,
            labels,
            None if settings is None else settings.model_dump(mode="json", exclude_unset=True),
        )
    return out


def _apply_node(
    s: Session,
    actor: str,
    doc: Document,
    serial: str,
    labels: dict[str, str],
    settings: dict[str, Any] | None,
    unpinned: bool,
) -> list[str]:
    """A site's node: claimed when it is not yet (pinned to the Node document's
    fingerprints; a Site's bare serial only when unpinned claims are allowed)."""
    node = s.scalar(select(Node).where(Node.serial == serial))
    out = []
    pins = (doc.spec.device_cert_sha256, doc.spec.ek_sha256) if doc.kind == "Node" else (None, None)
    stored = (node.pinned_device_cert_sha256, node.pinned_ek_sha256) if node else None
    if node is None or (node.state == "claimed" and any(pins) and stored != pins):
        node, new = onboarding.claim(s, actor, serial, *pins, allow_unpinned=unpinned)
        out += [f"node/{serial} claimed"] if new else []
    own = {k: v for k, v in (node.settings or {}).items() if k != "agent"}  # not git's
    if (node.labels or {}) == labels and (settings is None or own == settings):
        return out
    nodes.update_node(s, actor, serial, labels, settings, may_debug=True)  # admin-set source
    return [*out, f"node/{serial} configured"]


def _apply_app(
    s: Session,
    actor: str,
    doc: Document,
    site_selector: dict[str, str],
    rollout: Document | None,
) -> list[str]:
    data = doc.spec.model_dump(mode="json")
    data["selector"] = {**(doc.spec.selector or {}), **site_selector}
    name = doc.spec.name
    app = s.scalar(select(App).where(App.name == name))
    if app is None:
        _guarded(doc, apps.create_app, s, actor, data)
        return [f"app/{name} created"]
    body = AppBody.model_validate(data)
    image, spec = _guarded(doc, apps.validated_spec, s, body, app.uuid)
    new_version = (image.id, spec) != (app.image_id, app.spec)
    active = s.scalar(select(Rollout).where(Rollout.app_id == app.id, Rollout.state.in_(ACTIVE)))
    if active is not None or (rollout is not None and new_version):
        return _roll_out(s, actor, doc, app, data, (image.id, spec), active, rollout)
    before = app_json(app, s.get(Image, app.image_id))  # type: ignore[arg-type]
    after = _guarded(doc, apps.replace_app, s, actor, name, data)
    return [] if after == before else [f"app/{name} configured"]


def _roll_out(
    s: Session,
    actor: str,
    doc: Document,
    app: App,
    data: dict[str, Any],
    version: tuple[int, dict[str, Any]],
    active: Rollout | None,
    rollout: Document | None,
) -> list[str]:
    """A new version of an app with a ``Rollout`` document starts a rollout (once)."""
    name = app.name

    def same(r: Rollout) -> bool:
        return (int(r.to_version["image_id"]), r.to_version["spec"]) == version

    if active is not None:
        if same(active):
            return []  # the rollout of this very version goes on
        if version == (app.image_id, app.spec):  # the new version was reverted in git
            rollback_rollout(s, actor, active.id)
            return [f"app/{name}: rollout {active.id} rolled back (reverted in git)"]
        raise _Refused(
            [
                ManifestError(
                    doc.file,
                    doc.line,
                    f"app {name!r} is being rolled out (rollout {active.id}); commit a new"
                    " version once it has finished or been rolled back",
                )
            ]
        )
    if data["selector"] != app.label_selector:
        raise _Refused(
            [
                ManifestError(
                    doc.file,
                    doc.line_of(("spec", "selector")),
                    "a rolled-out version changes image and spec, not the selector: commit"
                    " the selector change on its own",
                )
            ]
        )
    last = s.scalar(select(Rollout).where(Rollout.app_id == app.id).order_by(Rollout.id.desc()))
    if last is not None and last.state == "rolled_back" and same(last):
        return [f"app/{name}: this version was rolled back (rollout {last.id}); not retried"]
    assert rollout is not None
    body = {
        "app": data,
        "rings": [r.model_dump(mode="json") for r in rollout.spec.rings],
        "budgets": [b.model_dump(mode="json") for b in rollout.spec.budgets],
    }
    started = _guarded(rollout, start_rollout, s, actor, body)
    return [f"app/{name}: rollout {started.id} started"]


def _drop_unowned(s: Session, actor: str, owned: dict[tuple[str, str], Document]) -> list[str]:
    out = []
    for row in s.scalars(select(GitObject)).all():
        if (row.kind, row.name) in owned:
            continue
        s.delete(row)
        if row.kind == "App":
            if s.scalar(select(App).where(App.name == row.name)) is not None:
                try:
                    apps.delete_app(s, actor, row.name)
                except ApiError as exc:  # e.g. a rollout holds it
                    where = f"{row.file} (removed)"
                    raise _Refused([ManifestError(where, 0, exc.message)]) from exc
                out.append(f"app/{row.name} deleted")
        elif row.kind == "Network":
            net = s.scalar(select(Network).where(Network.name == row.name))
            if net is not None and not networks.network_users(s, row.name):
                networks.delete_network(s, actor, row.name)
                out.append(f"network/{row.name} deleted")
        else:
            out.append(f"node/{row.name} released")
    s.flush()
    return out
