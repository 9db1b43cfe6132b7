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
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.domain.views import wire_spec
from controller.store.models import (
    App,
    AppPin,
    Assignment,
    GitSource,
    Image,
    Network,
    Node,
    NodeRevision,
)
from controller.trust.downloads import signed_blob_url
from protocol.desired_state import AppSpec, DesiredState, ImageRef, NodeSettings
from protocol.desired_state import Network as NetworkSpec

__all__ = ["current_desired_state", "image_url", "selector_matches", "sync_label_assignments"]

KEEP_REVISIONS = 100


def image_url(
    public_url: str, image: Image, node_uuid: str | None = None, download_key: bytes = b""
) -> str:
    """Where a node fetches ``image``: its external URL, or the controller's datastore
    with a URL signed for that node (:mod:`controller.trust.downloads`)."""
    return image.url or signed_blob_url(public_url, image.sha256, node_uuid, download_key)


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, Any]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())  # type: ignore[union-attr]


def sync_label_assignments(session: Session, node: Node) -> None:
    """Add the instances the node's labels call for; drop label-made ones that no longer fit."""
    labels = node.labels or {}
    wanted = {
        app.id
        for app in session.scalars(select(App).where(App.label_selector.is_not(None)))
        if selector_matches(app.label_selector, labels)
    }
    existing = {
        a.app_id: a
        for a in session.scalars(select(Assignment).where(Assignment.node_id == node.id))
    }
    for app_id in wanted - existing.keys():
        session.add(Assignment(node_id=node.id, app_id=app_id, explicit=False))
    for app_id, row in existing.items():
        if not row.explicit and app_id not in wanted:
            session.delete(row)
    session.flush()


def _apps_for(session: Session, node: Node, public_url: str, key: bytes) -> list[AppSpec]:
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
        out.append(_app_spec(app, image, spec, inst, image_url(public_url, image, node.uuid, key)))
    return out


def _app_spec(app: App, image: Image, spec: dict[str, Any], inst: Assignment, url: str) -> AppSpec:
    return AppSpec(
        uuid=app.uuid,
        name=app.name,
        kind=app.kind,  # type: ignore[arg-type]  # stored as validated text
        image=ImageRef(
            name=image.name,
            sha256=image.sha256,
            size=image.size,
            url=url,
            format=image.format,  # type: ignore[arg-type]  # stored as validated text
        ),
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
    apps = _apps_for(session, node, public_url, download_key)
    base = (defaults or NodeSettings()).model_dump()
    doc = DesiredState(
        node_uuid=node.uuid,
        generation=0,
        reboot_counter=node.reboot_counter,
        settings=NodeSettings.model_validate({**base, **(node.settings or {})}),
        networks=_networks_for(session, apps),
        apps=apps,
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
