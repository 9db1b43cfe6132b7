"""Finding stored objects by the keys operators use (404 with the key when absent)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.errors import ApiError
from controller.store.models import App, Image, Network, Node

__all__ = ["find_app", "find_image", "find_network", "find_node"]


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


def find_image(session: Session, name: str) -> Image:
    image = session.scalar(select(Image).where(Image.name == name))
    if image is None:
        raise ApiError(404, "not_found", f"no image named {name!r}")
    return image


def find_network(session: Session, name: str) -> Network:
    net = session.scalar(select(Network).where(Network.name == name))
    if net is None:
        raise ApiError(404, "not_found", f"no network named {name!r}")
    return net
