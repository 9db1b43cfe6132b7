"""UI view: one action on the nodes ticked on the Nodes list — asked first on a page that
lists them, then applied node by node through the operator API's domain actions (which
check, refuse and audit as the user); a refusal is reported beside its node, the other
nodes still get the action.

    POST /ui/nodes/bulk  action=label   operator  PATCH /api/v1/nodes/<key> (labels + one)
                         action=assign  operator  POST /api/v1/nodes/<key>/apps
                         action=reboot  operator  POST /api/v1/nodes/<key>/commands
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from controller.domain import nodes as nodes_actions
from controller.errors import ApiError
from controller.store.lookup import find_node
from controller.store.models import Node
from controller.ui.blueprint import services, ui
from controller.ui.field_rules import plain_error
from controller.ui.security import requires, safe_next
from controller.ui.views_fleet import BULK_MAX
from controller.web.context import actor

__all__ = ["Outcome", "nodes_bulk"]


@dataclass(frozen=True)
class Bulk:
    """What was asked: the action, its argument and the nodes."""

    action: str
    serials: list[str]
    key: str = ""
    value: str = ""
    app: str = ""

    @property
    def what(self) -> str:
        if self.action == "label":
            return f"Set label {self.key}={self.value}"
        if self.action == "assign":
            return f"Assign app {self.app}"
        return "Reboot"


@dataclass(frozen=True)
class Outcome:
    serial: str
    status: str  # done | unchanged | refused
    message: str


FACTS = {
    "label": [
        "Each node gets the label {key}={value}; a node with another value of {key} has it"
        " replaced, and its other labels stay as they are.",
        "Apps whose label selector now matches a node start on it.",
    ],
    "assign": [
        "App {app} is assigned to each node and starts there.",
        "A node that already runs it is left as it is; a revoked node is refused.",
    ],
    "reboot": [
        "Each node reboots when it next fetches its config; its apps stop meanwhile.",
    ],
}


def _back() -> str:
    back = request.form.get("back", "")
    return back if back.startswith("/ui/nodes") and safe_next(back) == back else url_for("ui.nodes")


def _read() -> Bulk | str:
    """The posted bulk action, or why it cannot be asked."""
    action = request.form.get("action", "")
    serials = list(dict.fromkeys(s.strip() for s in request.form.getlist("serial") if s.strip()))
    if action not in FACTS:
        return "Choose what to do with the selected nodes."
    if not serials:
        return "Select at least one node first."
    if len(serials) > BULK_MAX:
        return (
            f"{len(serials)} nodes are selected; one bulk action takes at most {BULK_MAX}."
            " Select fewer (filter the list first) and repeat for the rest."
        )
    if action == "label":
        key, sep, value = request.form.get("label", "").strip().partition("=")
        if not sep or not key.strip():
            return "Write the label as key=value."
        return Bulk(action, serials, key=key.strip(), value=value.strip())
    if action == "assign":
        app = request.form.get("app", "").strip()
        return Bulk(action, serials, app=app) if app else "Choose the app to assign."
    return Bulk(action, serials)


def _why(exc: ApiError) -> str:
    details = exc.details if isinstance(exc.details, list) else []
    words = [plain_error("Label", "labels", d) for d in details if isinstance(d, dict)]
    return "; ".join(words) or exc.message


def _apply(bulk: Bulk, serial: str) -> Outcome:
    """The action on one node, in a transaction of its own."""
    try:
        with services().db.transaction() as s:
            if bulk.action == "reboot":
                counter = nodes_actions.command(s, actor(), serial, "reboot")
                return Outcome(serial, "done", f"reboot requested (counter {counter})")
            if bulk.action == "assign":
                if nodes_actions.assign(s, actor(), serial, bulk.app):
                    return Outcome(serial, "done", f"{bulk.app} assigned")
                return Outcome(serial, "unchanged", f"{bulk.app} already runs here")
            labels = dict(find_node(s, serial).labels or {})
            if labels.get(bulk.key) == bulk.value:
                return Outcome(serial, "unchanged", f"already labelled {bulk.key}={bulk.value}")
            nodes_actions.update_node(s, actor(), serial, labels={**labels, bulk.key: bulk.value})
            return Outcome(serial, "done", f"labelled {bulk.key}={bulk.value}")
    except ApiError as exc:
        return Outcome(serial, "refused", _why(exc))


@ui.post("/nodes/bulk")
@requires("operator")
def nodes_bulk() -> Response | str:
    """Without ``confirmed=yes``: the confirmation page; with it: the action, node by node."""
    back = _back()
    bulk = _read()
    if isinstance(bulk, str):
        flash(bulk, "error")
        return redirect(back)
    facts = [f.format(key=bulk.key, value=bulk.value, app=bulk.app) for f in FACTS[bulk.action]]
    if request.form.get("confirmed") != "yes":
        with services().db.transaction() as s:
            known = set(s.scalars(select(Node.serial).where(Node.serial.in_(bulk.serials))))
        return render_template(
            "bulk.html", bulk=bulk, facts=facts, known=known, back=back, outcomes=None
        )
    outcomes = [_apply(bulk, serial) for serial in bulk.serials]
    counts = {k: sum(o.status == k for o in outcomes) for k in ("done", "unchanged", "refused")}
    return render_template(
        "bulk.html", bulk=bulk, facts=facts, outcomes=outcomes, counts=counts, back=back
    )
