"""UI views: fleet overview, the node list, a node's page and the commands on it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from controller.domain import nodes as nodes_actions
from controller.domain.adapters import node_adapters
from controller.domain.events import query as query_events
from controller.domain.status import online_cutoff, reported
from controller.errors import ApiError
from controller.store.lookup import find_node
from controller.store.models import App, NodeTrust, utcnow
from controller.trust.views import trust_json
from controller.ui.blueprint import apply_errors, services, ui, unassign_and_flash
from controller.ui.charts import node_charts
from controller.ui.forms import (
    AssignForm,
    CommandForm,
    LabelsForm,
    SyntaxProblem,
    choices,
    parse_pairs,
)
from controller.ui.listing import list_args
from controller.ui.log_lines import LEVELS, level_filter, recent_logs
from controller.ui.queries import (
    FILTERS,
    NODE_SORTS,
    fleet_summary,
    metric_samples,
    node_apps,
    node_list,
    node_status,
)
from controller.ui.security import requires
from controller.web.context import actor
from protocol.desired_state import NodeSettings

REFRESH_S = 10
LOG_LINES = 200
"""Lines in a log panel (the newest; the download has them all)."""
BULK_MAX = 500
"""The most nodes one bulk action takes."""
WINDOWS = {"1h": 1, "6h": 6, "24h": 24}
COMMANDS = {
    "reboot": "Reboot the node",
    "restart": "Restart the app",
    "purge": "Purge the app (recreate it from its image; its data is lost)",
}


def _cutoff() -> dt.datetime:
    return online_cutoff(services().settings.node_config_interval_s)


@ui.get("/")
@requires("viewer")
def overview() -> str:
    with services().db.transaction() as s:
        summary = fleet_summary(s, _cutoff())
        events = query_events(s, limit=15)
    return render_template("overview.html", s=summary, events=events, refresh=REFRESH_S)


@ui.get("/nodes")
@requires("viewer")
def nodes() -> str:
    args = list_args(request.args, NODE_SORTS, "serial")
    status = request.args.get("status", "")
    status = status if status in FILTERS else ""
    with services().db.transaction() as s:
        page = node_list(s, _cutoff(), args, status)
        apps = list(s.scalars(select(App.name).order_by(App.name)))
    return render_template(
        "nodes.html",
        page=page,
        q=args.q,
        status=status,
        filters=FILTERS,
        apps=apps,
        bulk_max=BULK_MAX,
        refresh=REFRESH_S,
    )


def _node_context(s: Any, serial: str) -> dict[str, Any]:
    node = find_node(s, serial)
    trust = s.get(NodeTrust, node.id)
    status = node_status(
        node.state,
        node.last_seen,
        trust.state if trust else None,
        bool(trust and trust.revoked_at),
        node.info,
        _cutoff(),
    )
    window = request.args.get("window", "1h")
    window = window if window in WINDOWS else "1h"
    since = utcnow() - dt.timedelta(hours=WINDOWS[window])
    cpus = int((node.inventory or {}).get("cpus") or 1)
    source = request.args.get("source", "")
    level = level_filter(request.args.get("level", ""))
    apps = node_apps(s, node)
    app_names = {a.uuid: a.name for a in s.scalars(select(App))}
    defaults = NodeSettings(config_interval_s=services().settings.node_config_interval_s)
    return {
        "node": node,
        "status": status,
        "trust": trust_json(node, trust) if node.uuid else None,
        "trust_row": trust,
        "apps": apps,
        "charts": node_charts(metric_samples(s, node, since), cpus),
        "window": window,
        "windows": list(WINDOWS),
        "events": query_events(s, node=node, limit=30),
        "logs": recent_logs(s, node, source, level, limit=LOG_LINES),
        "source": source,
        "level": level,
        "levels": LEVELS[1:],
        "log_lines": LOG_LINES,
        "sources": sorted({*(node.log_seq or {}).keys()}),
        "app_names": app_names,
        "settings": {**defaults.model_dump(), **(node.settings or {})},
        "ports": msg.ports if (msg := reported(node.info)) else None,
        "adapters": node_adapters(s, node),
        "all_apps": sorted(app_names.values()),
        "refresh": REFRESH_S,
    }


def _render_node(serial: str, **forms: Any) -> str:
    with services().db.transaction() as s:
        ctx = _node_context(s, serial)
    assign = forms.pop("assign_form", None) or AssignForm()
    assign.app.choices = choices(*ctx["all_apps"])
    labels = forms.pop("labels_form", None) or LabelsForm(
        data={"labels": "\n".join(f"{k}={v}" for k, v in (ctx["node"].labels or {}).items())}
    )
    return render_template("node.html", assign_form=assign, labels_form=labels, **ctx)


@ui.get("/nodes/<serial>")
@requires("viewer")
def node(serial: str) -> str:
    return _render_node(serial)


@ui.post("/nodes/<serial>/command")
@requires("operator")
def node_command(serial: str) -> str | Response:
    """Ask first (a confirmation page); act only when the confirmation is posted."""
    form = CommandForm()
    name, app = form.command.data or "", form.app.data or ""
    if name not in COMMANDS:
        flash("Unknown command.", "error")
        return redirect(url_for("ui.node", serial=serial))
    if form.confirmed.data != "yes":
        with services().db.transaction() as s:
            found = find_node(s, serial)
        return render_template(
            "confirm.html", node=found, command=name, app=app, what=COMMANDS[name], form=form
        )
    try:
        with services().db.transaction() as s:
            counter = nodes_actions.command(s, actor(), serial, name, app or None)
    except ApiError as exc:
        flash(f"{name} refused: {exc.message}", "error")
    else:
        target = f"app {app}" if app else f"node {serial}"
        flash(f"{name.capitalize()} of {target} requested (counter {counter}).", "info")
    return redirect(url_for("ui.node", serial=serial))


@ui.post("/nodes/<serial>/apps")
@requires("operator")
def node_assign(serial: str) -> str | Response:
    form = AssignForm()
    form.app.choices = []
    if form.validate_on_submit():
        try:
            with services().db.transaction() as s:
                new = nodes_actions.assign(s, actor(), serial, form.app.data or "")
        except ApiError as exc:
            apply_errors(form, exc)
        else:
            flash(
                f"App {form.app.data} assigned." if new else f"{form.app.data} already runs here.",
                "info",
            )
            return redirect(url_for("ui.node", serial=serial))
    return _render_node(serial, assign_form=form), 422  # type: ignore[return-value]


@ui.post("/nodes/<serial>/apps/<name>/remove")
@requires("operator")
def node_unassign(serial: str, name: str) -> Response:
    unassign_and_flash(serial, name)
    return redirect(url_for("ui.node", serial=serial))


@ui.post("/nodes/<serial>/labels")
@requires("operator")
def node_labels(serial: str) -> str | Response:
    form = LabelsForm()
    if form.validate_on_submit():
        try:
            labels = parse_pairs(form.labels.data, "labels")
            with services().db.transaction() as s:
                nodes_actions.update_node(s, actor(), serial, labels=labels)
        except SyntaxProblem as exc:
            form.labels.errors = [*form.labels.errors, str(exc)]
        except ApiError as exc:
            apply_errors(form, exc, {"labels": "labels"})
        else:
            flash("Labels saved.", "info")
            return redirect(url_for("ui.node", serial=serial))
    return _render_node(serial, labels_form=form), 422  # type: ignore[return-value]
