"""App networks: create or change one (its subnet may not overlap another's), delete one
no app uses."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.bodies import NetworkBody
from controller.domain.common import changed, parse
from controller.domain.ownership import refuse_if_git_owned
from controller.errors import ApiError
from controller.store.audit import audit
from controller.store.lookup import find_network
from controller.store.models import App, Network

__all__ = ["create_network", "delete_network", "network_json", "network_users", "put_network"]


def network_json(net: Network) -> dict[str, Any]:
    return {"name": net.name, "subnet": net.subnet, "nat": net.nat}


def network_users(s: Session, name: str) -> list[str]:
    """The apps that attach to the network ``name``."""
    return [
        a.name
        for a in s.scalars(select(App).order_by(App.name))
        if any(n.get("name") == name for n in a.spec.get("networks", []))
    ]


def _refuse_overlap(s: Session, body: NetworkBody) -> None:
    new = ipaddress.IPv4Network(body.subnet)
    for other in s.scalars(select(Network).where(Network.name != body.name)):
        if ipaddress.IPv4Network(other.subnet).overlaps(new):
            message = f"{body.subnet} overlaps {other.name} ({other.subnet})"
            raise ApiError(409, "conflict", message, [{"field": "subnet", "error": message}])


def put_network(s: Session, actor: str, body: NetworkBody) -> str | None:
    """Create the network or bring it to ``body``: "created", "configured" or None (as is)."""
    net = s.scalar(select(Network).where(Network.name == body.name))
    if net is not None and (net.subnet, net.nat) == (body.subnet, body.nat):
        return None
    if net is None:
        _insert(s, actor, body)
        return "created"
    _refuse_overlap(s, body)
    changed(s)
    before = network_json(net)
    net.subnet, net.nat = body.subnet, body.nat
    audit(s, actor, "network.update", body.name, before=before, after=body.model_dump())
    return "configured"


def create_network(s: Session, actor: str, data: Any) -> dict[str, Any]:
    """``POST /networks``: a new network (409 when the name exists or the subnet overlaps)."""
    body = parse(NetworkBody, data)
    if s.scalar(select(Network).where(Network.name == body.name)) is not None:
        message = f"a network named {body.name!r} exists"
        raise ApiError(409, "conflict", message, [{"field": "name", "error": message}])
    return network_json(_insert(s, actor, body))


def _insert(s: Session, actor: str, body: NetworkBody) -> Network:
    """Add the network (a concurrent identical create loses at the unique name: 409)."""
    _refuse_overlap(s, body)
    changed(s)
    net = Network(name=body.name, subnet=body.subnet, nat=body.nat)
    s.add(net)
    audit(s, actor, "network.create", body.name, after=body.model_dump())
    s.flush()
    return net


def delete_network(s: Session, actor: str, name: str) -> None:
    """``DELETE /networks/<name>``: only when no app attaches to it."""
    net = find_network(s, name)
    refuse_if_git_owned(s, actor, "Network", name)
    users = network_users(s, name)
    if users:
        raise ApiError(409, "conflict", f"network {name!r} is used by {', '.join(users)}")
    audit(s, actor, "network.delete", name, before=network_json(net))
    changed(s)
    s.delete(net)
