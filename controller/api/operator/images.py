"""Operator API: images (upload to the datastore, or register an external URL)."""

from __future__ import annotations

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from controller.api.auth import require_role
from controller.api.openapi import Link, doc
from controller.api.operator.blueprint import ops_api
from controller.domain import images
from controller.domain.bodies import ImageQuery, ImageRegistration
from controller.domain.views import image_json
from controller.store.models import App, Image
from controller.web.body import json_body
from controller.web.context import actor, svc


@ops_api.post("/images")
@require_role("operator")
@doc(
    "Upload an image to the controller's datastore (body: the bytes)",
    query=ImageQuery,
    raw_body="application/octet-stream",
    status=201,
)
def upload_image() -> ResponseReturnValue:
    request.max_content_length = svc().settings.max_image_bytes  # before reading the body
    out = images.upload_image(svc(), actor(), request.args.to_dict(), request.stream)
    return jsonify(out), 201


@ops_api.post("/images/register")
@require_role("operator")
@doc(
    "Register an image held in an external datastore",
    body=ImageRegistration,
    status=201,
    links={"DeleteImage": Link("ops_api.delete_image.delete", {"name": "$response.body#/name"})},
)
def register_image() -> ResponseReturnValue:
    data = json_body()
    with svc().db.transaction() as s:
        out = images.register_image(s, actor(), data)
    return jsonify(out), 201


@ops_api.get("/images")
@require_role("viewer")
@doc("List images and the apps that use them")
def list_images() -> ResponseReturnValue:
    with svc().db.transaction() as s:
        rows = s.scalars(select(Image).order_by(Image.name)).all()
        users: dict[int, list[str]] = {}
        for image_id, name in s.execute(select(App.image_id, App.name).order_by(App.name)):
            users.setdefault(image_id, []).append(name)
        return jsonify({"images": [{**image_json(i), "apps": users.get(i.id, [])} for i in rows]})


@ops_api.delete('/images/<key(reserved="register"):name>')
@require_role("operator")
@doc("Delete an image no app uses")
def delete_image(name: str) -> ResponseReturnValue:
    with svc().db.transaction() as s:
        images.delete_image(s, svc(), actor(), name)
    return jsonify({"deleted": name})
