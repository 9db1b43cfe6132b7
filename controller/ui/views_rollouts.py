"""UI views: staged rollouts (list, start one with its rings, per-ring and per-node
progress, approve / pause / resume / roll back after a confirmation). The git source is
in ``views_git``."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from controller.errors import ApiError
from controller.rollouts import service
from controller.store.lookup import find_app
from controller.store.models import App, Image, Rollout
from controller.ui.blueprint import services, ui
from controller.ui.forms import ConfirmForm, SyntaxProblem, choices
from controller.ui.forms_rollout import RolloutForm, place_errors
from controller.ui.security import requires
from controller.web.context import actor

ACTIONS = {
    "approve": ("Approve the waiting ring", "The ring's nodes get the new version."),
    "pause": ("Pause the rollout", "No ring advances until it is resumed."),
    "resume": ("Resume the rollout", "The current ring's health window starts over."),
    "rollback": ("Roll back", "Every node returns to the previous version."),
}


@ui.get("/rollouts")
@requires("viewer")
def rollouts() -> str:
    with services().db.transaction() as s:
        rows = s.scalars(select(Rollout).order_by(Rollout.id.desc()).limit(100)).all()
        items = [service.rollout_json(s, r, full=False) for r in rows]
        apps = list(s.scalars(select(App.name).order_by(App.name)))
    return render_template("rollouts.html", rollouts=items, apps=apps)


def _current(name: str) -> dict[str, Any]:
    """The app's stored definition (secrets as stored: the form never shows them)."""
    with services().db.transaction() as s:
        app = find_app(s, name)
        image = s.get(Image, app.image_id)
        assert image is not None
        images = [
            (i.name, f"{i.name} ({i.format})")
            for i in s.scalars(select(Image).order_by(Image.name))
        ]
        return {
            "name": app.name,
            "kind": app.kind,
            "image": image.name,
            "selector": app.label_selector,
            "spec": dict(app.spec),
            "images": images,
        }


def _field_named(form: RolloutForm, field_id: str) -> Any:
    for f in form:
        if f.id == field_id:
            return f
        for entry in getattr(f, "entries", []):
            for sub in entry.form:
                if sub.id == field_id:
                    return sub
    return None


@ui.route("/rollouts/new", methods=["GET", "POST"])
@requires("operator")
def rollouts_new() -> str | Response | tuple[str, int]:
    """Start a rollout: the app's new version and its rings (``service.start``, as the
    API's POST /rollouts); a refusal shows the form again with the problem by its field."""
    name = request.args.get("app", "")
    current = _current(name)
    form = RolloutForm()
    form.image.choices = choices(*current["images"])
    if request.method == "GET":
        form.fill({**current["spec"], "image": current["image"]})
    elif form.validate_on_submit():
        try:
            body = form.to_body(current)
            with services().db.transaction() as s:
                rid = service.start(s, actor(), body).id
        except SyntaxProblem as exc:
            field = _field_named(form, exc.field)
            if field is None:
                form.form_errors.append(str(exc))
            else:
                field.errors = [*list(field.errors), str(exc)]
        except ApiError as exc:
            place_errors(form, exc)
        else:
            flash(f"Rollout {rid} of {name} started.", "info")
            return redirect(url_for("ui.rollouts_detail", rid=rid))
    status = 422 if request.method == "POST" else 200
    return render_template("rollout_form.html", form=form, app=current), status


@ui.get("/rollouts/<id:rid>")
@requires("viewer")
def rollouts_detail(rid: int) -> str:
    with services().db.transaction() as s:
        r = service.rollout_json(s, service.find_rollout(s, rid))
    return render_template("rollout.html", r=r, actions=ACTIONS, form=ConfirmForm())


@ui.post("/rollouts/<id:rid>/<action>")
@requires("operator")
def rollouts_action(rid: int, action: str) -> str | Response:
    """Ask first (a confirmation page); act only when the confirmation is posted."""
    number = rid
    if action not in ACTIONS:
        flash("Unknown action.", "error")
        return redirect(url_for("ui.rollouts_detail", rid=number))
    form = ConfirmForm()
    if not form.validate_on_submit() or form.confirmed.data != "yes":
        with services().db.transaction() as s:
            r = service.rollout_json(s, service.find_rollout(s, number), full=False)
        return render_template(
            "rollout_confirm.html", r=r, action=action, what=ACTIONS[action], form=form
        )
    try:
        with services().db.transaction() as s:
            out = service.rollout_json(s, getattr(service, action)(s, actor(), number), full=False)
    except ApiError as exc:
        flash(f"{action.capitalize()} refused: {exc.message}", "error")
    else:
        flash(f"Rollout {number} of {out['app']}: {out['state'].replace('_', ' ')}.", "info")
    return redirect(url_for("ui.rollouts_detail", rid=number))
