"""Operator API: nodes — claim, pending approval, labels/settings, commands, events, logs."""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from controller.api.auth import caller_has, require_role
from controller.api.openapi import Link, doc
from controller.api.operator.blueprint import ops_api
from controller.domain import bulk_enrolment, events, nodes, onboarding
from controller.domain.bodies import ClaimBody, CommandBody, NodePatch
from controller.domain.common import Body, parse
from controller.domain.labels import effective_labels
from controller.domain.views import node_json
from controller.errors import ApiError
from controller.store.lookup import find_node
from controller.store.models import LogBatch, Node, PendingRegistration
from controller.trust.state import fleet_policy
from controller.web.body import json_body
from controller.web.context import actor, svc
from protocol.desired_state import Name

NODE = '/nodes/<key(reserved="claim,import"):key>'
"""A node by serial or uuid; ``/nodes/claim`` and ``/nodes/import`` are routes, never a
node."""


class NodeQuery(Body):
    label: str | None = None
    """key=value; only nodes with that label."""


class AssignBody(Body):
    app: Name


class LogQuery(Body):
    source: str | None = None
    limit: int = Field(default=200, ge=1, le=5000)


@ops_api.post("/nodes/claim")
@require_role("operator")
@doc(
    "Claim a serial so the node carrying it may onboard, pinned to its device and/or EK"
    " certificate fingerprint (unpinned only when the controller allows it); 200: it was"
    " claimed already",
    body=ClaimBody,
    status=201,
    also=(200,),
    links={
        "ShowNode": Link("ops_api.show_node.get", {"key": "$response.body#/serial"}),
        "PatchNode": Link("ops_api.patch_node.patch", {"key": "$response.body#/serial"}),
        "AssignApp": Link("ops_api.assign.post", {"key": "$response.body#/serial"}),
        "NodeEvents": Link("ops_api.node_events.get", {"key": "$response.body#/serial"}),
        "DeleteNode": Link("ops_api.delete_node.delete", {"key": "$response.body#/serial"}),
    },
)
def claim() -> ResponseReturnValue:
    body = parse(ClaimBody, json_body())
    services = svc()
    with services.db.transaction() as s:
        node, new = onboarding.claim(
            s,
            actor(),
            body.serial,
            body.device_cert_sha256,
            body.ek_sha256,
            allow_unpinned=services.settings.allow_unpinned_claims,
        )
        return jsonify(node_json(s, node)), 201 if new else 200


@ops_api.post("/nodes/import")
@require_role("admin")
@doc(
    "Bulk enrolment (manufacturing): a CSV manifest 'serial,device_cert[,ek_cert]' (base64"
    " DER or PEM certificates); every row becomes a registered node, or none does (422 lists"
    " the refused lines, 409 rows that contradict stored nodes); rows already registered"
    " with the same identity are left as they are",
    raw_body="text/csv",
)
def import_nodes() -> ResponseReturnValue:
    request.max_content_length = bulk_enrolment.MAX_MANIFEST_BYTES  # before reading the body
    if request.mimetype != "text/csv":
        raise ApiError(415, "unsupported_media_type", "send the manifest as text/csv")
    data = request.get_data(cache=False)
    services = svc()
    with services.db.transaction() as s:
        tpm_less = fleet_policy(s).tpm_less
    rows = bulk_enrolment.parse_manifest(data, services.ek_bundle, tpm_less)
    with services.db.transaction() as s:
        outcome = bulk_enrolment.import_manifest(s, actor(), rows, hashlib.sha256(data).hexdigest())
    return jsonify(outcome)


@ops_api.get("/nodes")
@require_role("viewer")
@doc("List nodes", query=NodeQuery)
def list_nodes() -> ResponseReturnValue:
    query = parse(NodeQuery, request.args.to_dict())
    with svc().db.transaction() as s:
        nodes = s.scalars(select(Node).order_by(Node.serial)).all()
        if query.label:
            key, _, value = query.label.partition("=")
            nodes = [n for n in nodes if effective_labels(n).get(key) == value]
        return jsonify({"nodes": [node_json(s, n, full=False) for n in nodes]})


@ops_api.get(NODE)
@require_role("viewer")
@doc("Show a node (by serial or uuid)")
def show_node(key: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        return jsonify(node_json(s, find_node(s, key)))


@ops_api.patch(NODE)
@require_role("operator")
@doc("Set a node's labels and/or settings (debug access: admin only)", body=NodePatch)
def patch_node(key: str) -> ResponseReturnValue:
    body = parse(NodePatch, json_body())
    with svc().db.transaction() as s:
        node = nodes.update_node(
            s, actor(), key, body.labels, body.settings, may_debug=caller_has("admin")
        )
        return jsonify(node_json(s, node))


@ops_api.delete(NODE)
@require_role("admin")
@doc("Forget a claimed node that never registered")
def delete_node(key: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        nodes.delete_node(s, actor(), key)
    return jsonify({"deleted": key})


@ops_api.post("/nodes/<key>/commands")
@require_role("operator")
@doc("Reboot a node, or restart/purge one app instance (acted on once)", body=CommandBody)
def command(key: str) -> ResponseReturnValue:
    body = parse(CommandBody, json_body())
    with svc().db.transaction() as s:
        counter = nodes.command(s, actor(), key, body.command, body.app)
    return jsonify({"command": body.command, "app": body.app, "counter": counter})


@ops_api.post("/nodes/<key>/apps")
@require_role("operator")
@doc("Run an app on a node (200: it already ran there)", body=AssignBody, status=201, also=(200,))
def assign(key: str) -> ResponseReturnValue:
    body = parse(AssignBody, json_body())
    with svc().db.transaction() as s:
        created = nodes.assign(s, actor(), key, body.app)
        return jsonify(node_json(s, find_node(s, key))), 201 if created else 200


@ops_api.delete("/nodes/<key>/apps/<name>")
@require_role("operator")
@doc("Stop running an app on a node")
def unassign(key: str, name: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        nodes.unassign(s, actor(), key, name)
        return jsonify(node_json(s, find_node(s, key)))


@ops_api.get("/pending")
@require_role("viewer")
@doc("Nodes that tried to onboard with an unclaimed serial")
def pending() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        rows = s.scalars(select(PendingRegistration).order_by(PendingRegistration.serial)).all()
        return jsonify({"pending": [onboarding.pending_json(p) for p in rows]})


@ops_api.post("/pending/<serial>/<any(approve,reject):decision>")
@require_role("operator")
@doc("Approve (claim, pinned to the identity it showed) or reject a pending node")
def decide(serial: str, decision: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        onboarding.decide(s, actor(), serial, decision)
    return jsonify({"serial": serial, "decision": decision})


@ops_api.get("/nodes/<key>/events")
@require_role("viewer")
@doc("Recent events of a node and its apps (newest first)")
def node_events(key: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        rows = events.query(s, node=find_node(s, key), limit=200)
        return jsonify({"events": [r.as_json() for r in rows]})


@ops_api.get("/nodes/<key>/logs")
@require_role("viewer")
@doc("Recent log lines a node sent (agent and app consoles)", query=LogQuery)
def node_logs(key: str) -> ResponseReturnValue:
    query = parse(LogQuery, request.args.to_dict())
    with svc().db.transaction() as s:
        node = find_node(s, key)
        stmt = select(LogBatch).where(LogBatch.node_id == node.id)
        if query.source:
            stmt = stmt.where(LogBatch.source == query.source)
        batches = s.scalars(stmt.order_by(LogBatch.id.desc()).limit(100)).all()
        lines: list[dict[str, Any]] = []
        for batch in batches:
            for raw in reversed(gzip.decompress(batch.data_gz).splitlines()):
                lines.append({"source": batch.source, **json.loads(raw)})
                if len(lines) >= query.limit:
                    break
            if len(lines) >= query.limit:
                break
        return jsonify({"lines": list(reversed(lines))})
