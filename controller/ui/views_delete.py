"""UI views: delete an app or an image, forget a claimed node that never registered — each
after a confirmation page, through the operator API's domain actions (which check, refuse
and audit).

    /ui/apps/<name>/delete       operator   DELETE /api/v1/apps/<name>
    /ui/images/<name>/delete     operator   DELETE /api/v1/images/<name>
    /ui/nodes/<serial>/delete    admin      DELETE /api/v1/nodes/<key>
"""

from __future__ import annotations

from flask import url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from controller.domain import apps as apps_actions
from controller.domain import images as images_actions
from controller.domain import nodes as nodes_actions
from controller.store.lookup import find_app, find_image, find_node
from controller.store.models import App, Assignment
from controller.ui.blueprint import services, ui
from controller.ui.confirm import Ask, ask_then_act, in_use_warning
from controller.ui.forms import ConfirmForm
from controller.ui.security import requires
from controller.web.context import actor


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@ui.route("/apps/<name>/delete", methods=["GET", "POST"])
@requires("operator")
def app_delete(name: str) -> Response | tuple[str, int]:
    def ask(s: Session) -> Ask:
        app = find_app(s, name)
        count = s.scalar(
            select(func.count()).select_from(Assignment).where(Assignment.app_id == app.id)
        )
        where = (
            f"App {name} is removed from its {_plural(count, 'node')}; their running"
            " instances are stopped and deleted."
            if count
            else f"App {name} runs on no node; only its definition is deleted."
        )
        return Ask(
            f"Delete app {name}",
            f"Yes, delete app {name}",
            [
                where,
                "Its definition (secret values included) is gone for good.",
                "The controller refuses while the app is being rolled out or when the git"
                " source owns it.",
            ],
        )

    return ask_then_act(
        ConfirmForm(),
        ask,
        lambda s: apps_actions.delete_app(s, actor(), name),
        done=f"App {name} deleted; its nodes stop and remove it.",
        refused=f"App {name} was not deleted",
        back=url_for("ui.app", name=name),
        after=url_for("ui.apps"),
    )


@ui.route("/images/<name>/delete", methods=["GET", "POST"])
@requires("operator")
def image_delete(name: str) -> Response | tuple[str, int]:
    def ask(s: Session) -> Ask:
        image = find_image(s, name)
        users = list(s.scalars(select(App.name).where(App.image_id == image.id).order_by(App.name)))
        stored = (
            "The file at its URL is not touched."
            if image.url
            else "Its file in the controller's datastore is deleted too, unless another image"
            " has the same contents."
        )
        warning = in_use_warning(f"Image {name}", users, "Point {them} at another image first.")
        return Ask(
            f"Delete image {name}",
            f"Yes, delete image {name}",
            [f"Image {name} ({image.format}) is removed from the catalog.", stored],
            warning,
        )

    return ask_then_act(
        ConfirmForm(),
        ask,
        lambda s: images_actions.delete_image(s, services(), actor(), name),
        done=f"Image {name} deleted.",
        refused=f"Image {name} was not deleted",
        back=url_for("ui.images"),
        after=url_for("ui.images"),
    )


@ui.route("/nodes/<serial>/delete", methods=["GET", "POST"])
@requires("admin")
def node_delete(serial: str) -> Response | tuple[str, int]:
    def ask(s: Session) -> Ask:
        node = find_node(s, serial)
        warning = (
            ""
            if node.state == "claimed"
            else f"Node {serial} has registered ({node.state}): only a claim that never"
            " registered can be forgotten, so the controller will refuse. Revoke the node"
            " instead."
        )
        return Ask(
            f"Forget node {serial}",
            f"Yes, forget node {serial}",
            [
                f"The claim of serial {serial}, which never registered, is deleted with the"
                " fingerprints it pins.",
                "A node carrying this serial that tries to onboard later waits under Pending"
                " for an approval, like any unclaimed serial.",
            ],
            warning,
        )

    return ask_then_act(
        ConfirmForm(),
        ask,
        lambda s: nodes_actions.delete_node(s, actor(), serial),
        done=f"Node {serial} forgotten: its claim is deleted.",
        refused=f"Node {serial} was not forgotten",
        back=url_for("ui.node", serial=serial),
        after=url_for("ui.nodes"),
    )
