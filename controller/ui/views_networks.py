"""UI views: app networks — list them (subnet, NAT, the apps attached), create one, delete
one no app uses (after a confirmation) — through the operator API's domain actions
(``controller.domain.networks``: they check, refuse and audit).

    GET  /ui/networks                  viewer     GET /api/v1/networks (sorted, paged, searched)
    POST /ui/networks/new              operator   POST /api/v1/networks
    /ui/networks/<name>/delete         operator   DELETE /api/v1/networks/<name>
"""

from __future__ import annotations

from dataclasses import replace

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from controller.domain import networks as networks_actions
from controller.errors import ApiError
from controller.store.lookup import find_network
from controller.store.models import Network
from controller.ui.blueprint import apply_errors, services, ui
from controller.ui.confirm import Ask, ask_then_act, in_use_warning
from controller.ui.forms import ConfirmForm, NetworkForm
from controller.ui.listing import SortColumn, contains, list_args, paginate
from controller.ui.security import requires
from controller.web.context import actor

SORTS: dict[str, tuple[SortColumn, ...]] = {
    "name": (Network.name,),
    "subnet": (Network.subnet,),
    "nat": (Network.nat,),
}


def _page(form: NetworkForm | None = None, status: int = 200) -> tuple[str, int]:
    """One page of networks (``q`` matches name or subnet) with the apps attached."""
    args = list_args(request.args, SORTS, "name")
    stmt = select(Network)
    if args.q:
        stmt = stmt.where(contains(args.q, Network.name, Network.subnet))
    with services().db.transaction() as s:
        page = paginate(s, stmt, args, SORTS, Network.id)
        rows = [
            {
                **networks_actions.network_json(net),
                "apps": networks_actions.network_users(s, net.name),
            }
            for (net,) in page.items
        ]
    page = replace(page, items=rows)
    html = render_template("networks.html", page=page, q=args.q, form=form or NetworkForm())
    return html, status


@ui.get("/networks")
@requires("viewer")
def networks() -> tuple[str, int]:
    return _page()


@ui.post("/networks/new")
@requires("operator")
def network_new() -> Response | tuple[str, int]:
    form = NetworkForm()
    if form.validate_on_submit():
        try:
            with services().db.transaction() as s:
                out = networks_actions.create_network(s, actor(), form.to_body())
        except ApiError as exc:
            apply_errors(form, exc)
        else:
            nat = ", NAT to the uplink" if out["nat"] else ""
            flash(f"Network {out['name']} created ({out['subnet']}{nat}).", "info")
            return redirect(url_for("ui.networks"))
    return _page(form, 422)


@ui.route("/networks/<name>/delete", methods=["GET", "POST"])
@requires("operator")
def network_delete(name: str) -> Response | tuple[str, int]:
    def ask(s: Session) -> Ask:
        net = find_network(s, name)
        users = networks_actions.network_users(s, name)
        warning = in_use_warning(f"Network {name}", users, "Take it out of {them} first.")
        return Ask(
            f"Delete network {name}",
            f"Yes, delete network {name}",
            [
                f"Network {name} ({net.subnet}{', NAT' if net.nat else ''}) is deleted.",
                "A node has a network only while one of its apps attaches to it, so no node"
                " loses anything.",
            ],
            warning,
        )

    return ask_then_act(
        ConfirmForm(),
        ask,
        lambda s: networks_actions.delete_network(s, actor(), name),
        done=f"Network {name} deleted.",
        refused=f"Network {name} was not deleted",
        back=url_for("ui.networks"),
        after=url_for("ui.networks"),
    )
