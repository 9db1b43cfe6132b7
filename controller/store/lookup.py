"""Finding stored objects by the keys operators use (404 with the key when absent)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.errors import ApiError
from controller.store.models import App, Node

__all__ = ["find_app", "find_node"]


def find_node(session: Session, key: str) -> Node:
    node = session.scalar(select(Node).where((Node.serial == key) | (Node.uuid == key)))
    if node is None:
        raise ApiError(404, "not_found", f"no node with serial or uuid {key!r}")
    return node


def find_app(session: Session, name: str) -> App:
    app = session.scalar(select(App).where(App.name == name))
    if app is None:
        raise ApiError(404, "not_found", f"no app named {name!r}")
    return app
