"""Build a node's desired state from the database, and keep its generation number.

Level-triggered: the document is rebuilt on every config request; the generation
moves forward only when the content (apart from the generation) changed.  On
PostgreSQL the node row is locked while comparing, so replicas answering at once
never give two contents one generation (SQLite serves one controller process).  App
instances come from explicit assignments and from apps whose label selector the
node's labels satisfy (materialised as non-explicit assignments, so their
restart/purge counters persist).  A staged rollout pins an app's new version on the
nodes of its current rings (``AppPin``): those nodes get the pinned image and spec,
every other node the app's definition.  Each new generation records the git revision
in force (``NodeRevision``), so a node's reported generation names the revision it runs.

Selectors match the node's effective labels (``domain.labels``: operator labels plus the
node's own as ``device/<key>``).  Site policies (``domain.site_policies``) give the node its
download share and window (``settings.downloads``) and may point its image URLs at a
nearer datastore; the images of active rollouts queued for the node are listed in
``prefetch`` (fetched ahead of the switch-over, in the download window).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.domain.labels import effective_labels
from controller.domain.labels import selector_matches as _matches
from controller.domain.site_policies import NodePolicy, group_members, load_policies, resolve
from controller.domain.views import wire_spec
from controller.store.models import (
    ACTIVE,
    App,
    AppPin,
    Assignment,
    GitSource,
    Image,
    Network,
    Node,
    NodeRevision,
    Rollout,
    RolloutNode,
)
from controller.trust.downloads import signed_blob_url
from protocol.desired_state import AppSpec, DesiredState, ImageRef, NodeSettings
from protocol.desired_state import Network as NetworkSpec

__all__ = [
    "current_desired_state",
    "image_url",
    "selector_matches",
    "sync_all_label_assignments",
    "sync_label_assignments",
]

KEEP_REVISIONS = 100


def image_url(
    public_url: str,
    image: Image,
    node_uuid: str | None = None,
    download_key: bytes = b"",
    base_url: str | None = None,
) -> str:
    """Where a node fetches ``image``: a datastore nearer the node (a site policy's
    ``image_base_url``, laid out by digest), else the image's external URL, else the
    controller's datastore with a URL signed for that node (:mod:`controller.trust.downloads`).
    The node checks the digest whatever the source."""
    if base_url:
        return f"{base_url.rstrip('/')}/sha256/{image.sha256}"
    return image.url or signed_blob_url(public_url, image.sha256, node_uuid, download_key)


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, Any]) -> bool:
    return _matches(selector, labels)


def sync_label_assignments(session: Session, node: Node) -> None:
    """Add the instances the node's labels call for; drop label-made ones that no longer fit."""
    sync_all_label_assignments(session, [node])


def sync_all_label_assignments(session: Session, nodes: list[Node] | None = None) -> None:
    """:func:`sync_label_assignments` for ``nodes`` (default: every registered node) in a
    few queries (the rollout engine calls it for the whole fleet)."""
    if nodes is None:
        nodes = list(session.scalars(select(Node).where(Node.state == "registered")))
    selected = [
        (app.id, app.label_selector)
        for app in session.scalars(select(App).where(App.label_selector.is_not(None)))
    ]
    ids = [n.id for n in nodes]
    existing: dict[int, dict[int, Assignment]] = {}
    for a in session.scalars(select(Assignment).where(Assignment.node_id.in_(ids))):
        existing.setdefault(a.node_id, {})[a.app_id] = a
    for node in nodes:
        labels = effective_labels(node)
        wanted = {app_id for app_id, sel in selected if selector_matches(sel, labels)}
        have = existing.get(node.id, {})
        for app_id in wanted - have.keys():
            session.add(Assignment(node_id=node.id, app_id=app_id, explicit=False))
        for app_id, row in have.items():
            if not row.explicit and app_id not in wanted:
                session.delete(row)
    session.flush()


def _apps_for(session: Session, node: Node, url_of: Callable[[Image], str]) -> list[AppSpec]:
    rows = session.execute(
        select(App, Image, Assignment)
        .join(Assignment, Assignment.app_id == App.id)
        .join(Image, Image.id == App.image_id)
        .where(Assignment.node_id == node.id)
        .order_by(App.name)
    ).all()
    pins = {
        p.app_id: (p, session.get(Image, p.image_id))
        for p in session.scalars(select(AppPin).where(AppPin.node_id == node.id))
    }
    out = []
    for app, image, inst in rows:
        if app.id in pins:
            pin, pinned_image = pins[app.id]
            image, spec = pinned_image or image, pin.spec
        else:
            spec = app.spec
        out.append(_app_spec(app, image, spec, inst, url_of))
    return out


def _image_ref(image: Image, url_of: Callable[[Image], str]) -> ImageRef:
    return ImageRef(
        name=image.name,
        sha256=image.sha256,
        size=image.size,
        url=url_of(image),
        format=image.format,  # type: ignore[arg-type]  # stored as validated text
    )


def _prefetch_for(session: Session, node: Node, url_of: Callable[[Image], str]) -> list[ImageRef]:
    """The new images of active rollouts in which the node waits its turn."""
    rows = session.scalars(
        select(Rollout.to_version)
        .join(RolloutNode, RolloutNode.rollout_id == Rollout.id)
        .where(
            RolloutNode.node_id == node.id,
            RolloutNode.phase == "queued",
            Rollout.state.in_(ACTIVE),
        )
        .order_by(Rollout.id)
    ).all()
    out: dict[str, ImageRef] = {}
    for version in rows:
        image = session.get(Image, int(version["image_id"]))
        if image is not None and image.sha256 not in out:
            out[image.sha256] = _image_ref(image, url_of)
    return list(out.values())[:16]


def _app_spec(
    app: App, image: Image, spec: dict[str, Any], inst: Assignment, url_of: Callable[[Image], str]
) -> AppSpec:
    return AppSpec(
        uuid=app.uuid,
        name=app.name,
        kind=app.kind,  # type: ignore[arg-type]  # stored as validated text
        image=_image_ref(image, url_of),
        restart_counter=inst.restart_counter,
        purge_counter=inst.purge_counter,
        **wire_spec(spec),
    )


def _networks_for(session: Session, apps: list[AppSpec]) -> list[NetworkSpec]:
    names = sorted({n.name for a in apps for n in a.networks})
    if not names:
        return []
    nets = session.scalars(select(Network).where(Network.name.in_(names))).all()
    return [
        NetworkSpec(name=n.name, subnet=n.subnet, nat=n.nat)
        for n in sorted(nets, key=lambda n: n.name)
    ]


def current_desired_state(
    session: Session,
    node: Node,
    public_url: str,
    defaults: NodeSettings | None = None,
    download_key: bytes = b"",
) -> DesiredState:
    """The node's document now; bumps ``node.config_generation`` if its content changed.

    ``download_key`` signs the datastore URLs for this node: every caller passes the
    controller's (``Services.download_key``), so the content hash is one."""
    assert node.uuid is not None, "only registered nodes have a desired state"
    if session.get_bind().dialect.name != "sqlite":
        # replicas: one (generation, content) pair per generation, never two
        session.refresh(node, with_for_update=True)
    sync_label_assignments(session, node)
    policies = load_policies(session)
    policy = resolve(policies, effective_labels(node)) if policies else NodePolicy()

    def url_of(image: Image) -> str:
        return image_url(public_url, image, node.uuid, download_key, policy.image_base_url)

    apps = _apps_for(session, node, url_of)
    base = (defaults or NodeSettings()).model_dump()
    downloads = policy.downloads(group_members(session, policies, policy))
    if downloads is not None:
        base["downloads"] = downloads.model_dump()
    doc = DesiredState(
        node_uuid=node.uuid,
        generation=0,
        reboot_counter=node.reboot_counter,
        settings=NodeSettings.model_validate({**base, **(node.settings or {})}),
        networks=_networks_for(session, apps),
        apps=apps,
        prefetch=_prefetch_for(session, node, url_of),
    )
    content_hash = doc.content_hash()
    if content_hash != node.config_content_hash:
        node.config_generation += 1
        node.config_content_hash = content_hash
        _record_revision(session, node)
    return doc.model_copy(update={"generation": node.config_generation})


def _record_revision(session: Session, node: Node) -> None:
    source = session.get(GitSource, 1)
    if source is not None and source.revision:
        session.add(
            NodeRevision(
                node_id=node.id, generation=node.config_generation, revision=source.revision
            )
        )
        session.execute(  # a node reports a recent generation: keep the last 100
            delete(NodeRevision).where(
                NodeRevision.node_id == node.id,
                NodeRevision.generation < node.config_generation - KEEP_REVISIONS,
            )
        )
