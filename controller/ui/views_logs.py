"""UI views: a node's or an app's whole stored log as a text download (viewers may, as they
may see the log panels), streamed a few batches at a time, newest line last."""

from __future__ import annotations

import re
from collections.abc import Iterator

from flask import Response, request
from sqlalchemy import select

from controller.store.lookup import find_app, find_node
from controller.store.models import App
from controller.ui.blueprint import services, ui
from controller.ui.log_lines import app_where, level_filter, log_text, node_where
from controller.ui.security import requires


def _attachment(text: Iterator[str], name: str) -> Response:
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".log"
    resp = Response(text, mimetype="text/plain")  # charset=utf-8 added by Flask
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


@ui.get("/nodes/<serial>/logs.txt")
@requires("viewer")
def node_log_download(serial: str) -> Response:
    """Every line the node sent (``?source=``, ``?level=`` as the node page's panel)."""
    source = request.args.get("source", "")
    level = level_filter(request.args.get("level", ""))
    with services().db.transaction() as s:
        node = find_node(s, serial)
        where = node_where(node, source)
        labels = {f"app:{uuid}": name for uuid, name in s.execute(select(App.uuid, App.name))}
        filename = f"node-{node.serial}"
    return _attachment(log_text(services().db, where, level, labels), filename)


@ui.get("/apps/<name>/logs.txt")
@requires("viewer")
def app_log_download(name: str) -> Response:
    """Every console line of the app from the nodes it is assigned to, each after its node."""
    with services().db.transaction() as s:
        app = find_app(s, name)
        where = app_where(app)
    return _attachment(log_text(services().db, where, by_node=True), f"app-{name}")
