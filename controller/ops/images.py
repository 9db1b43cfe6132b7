"""Operator API: images (upload to the datastore, or register an external URL) and networks."""

from __future__ import annotations

import ipaddress

from flask import jsonify, request
from pydantic import Field, model_validator
from sqlalchemy import func, select

from controller import actions
from controller.auth import require_role
from controller.db import App, Image, Network
from controller.errors import ApiError
from controller.gitops.ownership import refuse_if_git_owned
from controller.openapi import doc
from controller.ops.blueprint import ops_api
from controller.ops.bodies import ImageQuery, ImageRegistration
from controller.ops.common import Body, audit, changed, image_json, json_body, parse, svc
from protocol.desired_state import Name
from protocol.desired_state import Network as NetworkSpec


class NetworkBody(Body):
    name: Name
    subnet: str = Field(max_length=43)
    nat: bool = False

    @model_validator(mode="after")
    def _check(self) -> NetworkBody:
        NetworkSpec(name=self.name, subnet=self.subnet, nat=self.nat)
        return self


def _refuse_duplicate(s, name: str) -> None:  # type: ignore[no-untyped-def]
    if s.scalar(select(Image).where(Image.name == name)) is not None:
        raise ApiError(409, "conflict", f"an image named {name!r} exists")


@ops_api.post("/images")
@require_role("operator")
@doc(
    "Upload an image to the controller's datastore (body: the bytes)",
    query=ImageQuery,
    raw_body="application/octet-stream",
    status=201,
)
def upload_image():  # type: ignore[no-untyped-def]
    request.max_content_length = svc().settings.max_image_bytes  # before reading the body
    out = actions.upload_image(request.args.to_dict(), request.stream)
    return jsonify(out), 201


@ops_api.post("/images/register")
@require_role("operator")
@doc("Register an image held in an external datastore", body=ImageRegistration, status=201)
def register_image():  # type: ignore[no-untyped-def]
    data = json_body()
    with svc().db.transaction() as s:
        out = actions.register_image(s, data)
    return jsonify(out), 201


@ops_api.get("/images")
@require_role("viewer")
@doc("List images and the apps that use them")
def list_images():  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        images = s.scalars(select(Image).order_by(Image.name)).all()
        users: dict[int, list[str]] = {}
        for image_id, name in s.execute(select(App.image_id, App.name).order_by(App.name)):
            users.setdefault(image_id, []).append(name)
        return jsonify({"images": [{**image_json(i), "apps": users.get(i.id, [])} for i in images]})


@ops_api.delete("/images/<name>")
@require_role("operator")
@doc("Delete an image no app uses")
def delete_image(name: str):  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        image = s.scalar(select(Image).where(Image.name == name))
        if image is None:
            raise ApiError(404, "not_found", f"no image named {name!r}")
        if s.scalar(select(func.count()).select_from(App).where(App.image_id == image.id)):
            raise ApiError(409, "conflict", f"image {name!r} is used by apps")
        audit(s, "image.delete", name, before=image_json(image))
        s.delete(image)
        same_blob = s.scalar(
            select(func.count())
            .select_from(Image)
            .where(Image.sha256 == image.sha256, Image.id != image.id)
        )
        if image.url is None and not same_blob:
            (svc().settings.datastore_dir / "sha256" / image.sha256).unlink(missing_ok=True)
    return jsonify({"deleted": name})


@ops_api.post("/networks")
@require_role("operator")
@doc("Define an app network", body=NetworkBody, status=201)
def create_network():  # type: ignore[no-untyped-def]
    body = parse(NetworkBody, request.get_json(silent=True))
    new = ipaddress.IPv4Network(body.subnet)
    with svc().db.transaction() as s:
        for net in s.scalars(select(Network)):
            if net.name == body.name:
                raise ApiError(409, "conflict", f"a network named {body.name!r} exists")
            if ipaddress.IPv4Network(net.subnet).overlaps(new):
                raise ApiError(409, "conflict", f"{body.subnet} overlaps {net.name} ({net.subnet})")
        s.add(Network(name=body.name, subnet=body.subnet, nat=body.nat))
        audit(s, "network.create", body.name, after=body.model_dump())
        changed(s)
    return jsonify(body.model_dump()), 201


@ops_api.get("/networks")
@require_role("viewer")
@doc("List app networks")
def list_networks():  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        return jsonify(
            {
                "networks": [
                    {"name": n.name, "subnet": n.subnet, "nat": n.nat}
                    for n in s.scalars(select(Network).order_by(Network.name))
                ]
            }
        )


@ops_api.delete("/networks/<name>")
@require_role("operator")
@doc("Delete an app network no app uses")
def delete_network(name: str):  # type: ignore[no-untyped-def]
    with svc().db.transaction() as s:
        net = s.scalar(select(Network).where(Network.name == name))
        if net is None:
            raise ApiError(404, "not_found", f"no network named {name!r}")
        refuse_if_git_owned(s, "Network", name)
        users = [
            a.name
            for a in s.scalars(select(App))
            if any(n.get("name") == name for n in a.spec.get("networks", []))
        ]
        if users:
            raise ApiError(409, "conflict", f"network {name!r} is used by {', '.join(users)}")
        audit(s, "network.delete", name, before={"name": name, "subnet": net.subnet})
        changed(s)
        s.delete(net)
    return jsonify({"deleted": name})
