"""Operator API: the git source — set, show (revision, last error, each node's
revision), remove, sync now."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue

from controller.api.auth import require_role
from controller.api.openapi import doc
from controller.api.operator.blueprint import ops_api
from controller.errors import ApiError
from controller.gitops import source
from controller.gitops.source import GitSourceBody
from controller.gitops.sync import sync
from controller.web.body import json_body
from controller.web.context import actor, svc


@ops_api.put("/git/source")
@require_role("admin")
@doc("Follow a git repository of site folders (sites/<site>/*.yaml)", body=GitSourceBody)
def set_git_source() -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        return jsonify(source.set_source(s, actor(), data))


@ops_api.get("/git/source")
@require_role("viewer")
@doc(
    "The git source: revision in force, last sync, last error, each node's revision",
    errors=(404,),
)
def get_git_source() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        out = source.git_status(s)
    if out is None:
        raise ApiError(404, "not_found", "no git source is set")
    return jsonify(out)


@ops_api.delete("/git/source")
@require_role("admin")
@doc("Stop following the git source (its objects stay and become editable)")
def delete_git_source() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        source.delete_source(s, actor())
    return jsonify({"deleted": "git source"})


@ops_api.post("/git/sync")
@require_role("operator")
@doc("Fetch and apply the git source now (a revision refused whole, or not fetched: 409)")
def git_sync() -> ResponseReturnValue:
    result = sync(svc())
    if result.errors:
        raise ApiError(  # the request is fine; the stored source's revision is not
            409,
            "git_revision_refused",
            f"the revision was refused; {result.revision[:12] or 'nothing'} stays in force",
            [
                {
                    "field": f"{e['file']}:{e['line']}" if e["file"] else "(git)",
                    "error": e["reason"],
                    **e,
                }
                for e in result.errors
            ],
        )
    return jsonify(result.as_json())
