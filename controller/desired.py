"""Build a node's desired state from its assignments, and keep its generation number.

Level-triggered: the document is rebuilt from the database on every request; the
generation moves forward only when the content (apart from the generation) changed.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.db import App, Assignment, Image, Node
from protocol.desired_state import AppSpec, DesiredState, ImageRef, NodeSettings

__all__ = ["current_desired_state", "image_url"]


def image_url(public_url: str, sha256: str) -> str:
    return f"{public_url.rstrip('/')}/datastore/sha256/{sha256}"


def _apps_for(session: Session, node: Node, public_url: str) -> list[AppSpec]:
    rows = session.execute(
        select(App, Image)
        .join(Assignment, Assignment.app_id == App.id)
        .join(Image, Image.id == App.image_id)
        .where(Assignment.node_id == node.id)
        .order_by(App.name)
    ).all()
    return [
        AppSpec(
            uuid=app.uuid,
            name=app.name,
            kind=app.kind,  # type: ignore[arg-type]
            image=ImageRef(
                name=image.name,
                sha256=image.sha256,
                size=image.size,
                url=image_url(public_url, image.sha256),
                format=image.format,  # type: ignore[arg-type]
            ),
            **app.spec,
        )
        for app, image in rows
    ]


def current_desired_state(
    session: Session, node: Node, public_url: str, settings: NodeSettings | None = None
) -> DesiredState:
    """The node's document now; bumps ``node.config_generation`` if its content changed."""
    assert node.uuid is not None, "only registered nodes have a desired state"
    doc = DesiredState(
        node_uuid=node.uuid,
        generation=0,
        settings=settings or NodeSettings(),
        apps=_apps_for(session, node, public_url),
    )
    content = doc.model_dump(mode="json", exclude={"generation"})
    content_hash = hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    if content_hash != node.config_content_hash:
        node.config_generation += 1
        node.config_content_hash = content_hash
    return doc.model_copy(update={"generation": node.config_generation})
