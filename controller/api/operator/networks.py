"""Operator API: app networks."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from controller.api.auth import require_role
from controller.api.openapi import Link, doc
from controller.api.operator.blueprint import ops_api
from controller.domain import networks
from controller.domain.bodies import NetworkBody
from controller.store.models import Network
from controller.web.body import json_body
from controller.web.context import actor, svc


@ops_api.post("/networks")
@require_role("operator")
@doc(
    "Define an app network",
    body=NetworkBody,
    status=201,
    links={
        "DeleteNetwork": Link("ops_api.delete_network.delete", {"name": "$response.body#/name"})
    },
)
def create_network() -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        out = networks.create_network(s, actor(), data)
    return jsonify(out), 201


@ops_api.get("/networks")
@require_role("viewer")
@doc("List app networks")
def list_networks() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        rows = s.scalars(select(Network).order_by(Network.name))
        return jsonify({"networks": [networks.network_json(n) for n in rows]})


@ops_api.delete("/networks/<name>")
@require_role("operator")
@doc("Delete an app network no app uses")
def delete_network(name: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        networks.delete_network(s, actor(), name)
    return jsonify({"deleted": name})
