"""Operator API: the PCI/GPU adapters a node reported, and which can be passed through."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue

from controller.api.auth import require_role
from controller.api.openapi import doc
from controller.api.operator.blueprint import ops_api
from controller.domain.adapters import node_adapters
from controller.store.lookup import find_node
from controller.web.context import svc


@ops_api.get("/nodes/<key>/adapters")
@require_role("viewer")
@doc("List a node's PCI/GPU adapters: IOMMU group, assignable as a whole, used by which apps")
def list_node_adapters(key: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        return jsonify(node_adapters(s, find_node(s, key)))
