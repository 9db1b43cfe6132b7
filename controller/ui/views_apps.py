"""UI views: the app catalog (create, edit, assign, where it runs) and images (register by
URL or upload into the controller's datastore)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from controller.domain import apps as apps_actions
from controller.domain import images as images_actions
from controller.domain import nodes as nodes_actions
from controller.domain.app_metrics import app_metrics
from controller.domain.events import query as query_events
from controller.domain.views import app_json
from controller.errors import ApiError
from controller.store.lookup import find_app
from controller.store.models import Image
from controller.ui.blueprint import apply_errors, services, ui, unassign_and_flash
from controller.ui.charts import app_charts
from controller.ui.forms import (
    AppForm,
    ImageRegisterForm,
    ImageUploadForm,
    NodeAssignForm,
    SyntaxProblem,
    choices,
)
from controller.ui.listing import list_args
from controller.ui.log_lines import app_logs
from controller.ui.queries import (
    APP_SORTS,
    IMAGE_SORTS,
    app_instances,
    apps_catalog,
    images_catalog,
)
from controller.ui.security import requires
from controller.ui.views_fleet import LOG_LINES, REFRESH_S
from controller.web.context import actor

# API field paths → form fields (resources.* are flattened in the form)
APP_FIELDS = {
    "resources.vcpus": "vcpus",
    "resources.memory_mib": "memory_mib",
    "resources.disk_mib": "disk_mib",
    "(body)": "image",
}


def _image_choices(form: AppForm) -> None:
    with services().db.transaction() as s:
        form.image.choices = choices(
            *(
                (i.name, f"{i.name} ({i.format})")
                for i in s.scalars(select(Image).order_by(Image.name))
            )
        )


def _save_app(form: AppForm, name: str | None) -> bool:
    """Validate with the API's rules and save; errors land next to the fields."""
    try:
        body = form.to_body()
        with services().db.transaction() as s:
            if name is None:
                apps_actions.create_app(s, actor(), body)
            else:
                apps_actions.replace_app(s, actor(), name, body)
    except SyntaxProblem as exc:
        getattr(form, exc.field).errors = [*getattr(form, exc.field).errors, str(exc)]
        return False
    except ApiError as exc:
        apply_errors(form, exc, APP_FIELDS)
        return False
    return True


@ui.get("/apps")
@requires("viewer")
def apps() -> str:
    args = list_args(request.args, APP_SORTS, "name")
    with services().db.transaction() as s:
        page = apps_catalog(s, args)
    return render_template("apps.html", page=page, q=args.q)


@ui.route("/apps/new", methods=["GET", "POST"])
@requires("operator")
def app_new() -> str | Response | tuple[str, int]:
    form = AppForm()
    _image_choices(form)
    if form.validate_on_submit() and _save_app(form, None):
        flash(f"App {form.name.data} created.", "info")
        return redirect(url_for("ui.app", name=form.name.data))
    status = 422 if request.method == "POST" else 200
    return render_template("app_form.html", form=form, editing=None), status


@ui.route("/apps/<name>/edit", methods=["GET", "POST"])
@requires("operator")
def app_edit(name: str) -> str | Response | tuple[str, int]:
    form = AppForm()
    _image_choices(form)
    if request.method == "GET":
        with services().db.transaction() as s:
            app = find_app(s, name)
            image = s.get(Image, app.image_id)
            assert image is not None
            form.fill(app_json(app, image, reveal=True))  # operators: they set the values
    else:  # name and kind are fixed: the stored app's, whatever was posted
        with services().db.transaction() as s:
            form.name.data, form.kind.data = name, find_app(s, name).kind
    if request.method == "POST" and form.validate_on_submit() and _save_app(form, name):
        flash(f"App {name} saved; its nodes get the change.", "info")
        return redirect(url_for("ui.app", name=name))
    status = 422 if request.method == "POST" else 200
    return render_template("app_form.html", form=form, editing=name), status


def _app_page(name: str, assign: NodeAssignForm | None = None, status: int = 200) -> Any:
    with services().db.transaction() as s:
        app = find_app(s, name)
        out = app_json(app, s.get(Image, app.image_id))  # type: ignore[arg-type]
        page = app_instances(s, app, max(request.args.get("page", 1, type=int) or 1, 1))
        since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
        metrics = app_metrics(s, app, since)
        logs = app_logs(s, app, limit=LOG_LINES)
        events = query_events(s, app_uuid=app.uuid, limit=30)
    html = render_template(
        "app.html",
        app=out,
        page=page,
        assign_form=assign or NodeAssignForm(),
        metrics=metrics,
        charts=app_charts(metrics),
        logs=logs,
        events=events,
        log_lines=LOG_LINES,
        refresh=REFRESH_S,
    )
    return html, status


@ui.get("/apps/<name>")
@requires("viewer")
def app(name: str) -> Any:
    return _app_page(name)


@ui.post("/apps/<name>/assign")
@requires("operator")
def app_assign(name: str) -> Any:
    form = NodeAssignForm()
    if form.validate_on_submit():
        serial = (form.node.data or "").strip()
        try:
            with services().db.transaction() as s:
                new = nodes_actions.assign(s, actor(), serial, name)
        except ApiError as exc:
            form.node.errors = [*form.node.errors, exc.message]
        else:
            flash(
                f"{name} assigned to {serial}." if new else f"{name} already runs on {serial}.",
                "info",
            )
            return redirect(url_for("ui.app", name=name))
    return _app_page(name, form, 422)


@ui.post("/apps/<name>/unassign/<serial>")
@requires("operator")
def app_unassign(name: str, serial: str) -> Response:
    unassign_and_flash(serial, name)
    return redirect(url_for("ui.app", name=name))


def _images_page(
    register: ImageRegisterForm | None = None,
    upload: ImageUploadForm | None = None,
    status: int = 200,
) -> tuple[str, int]:
    args = list_args(request.args, IMAGE_SORTS, "name")
    with services().db.transaction() as s:
        page = images_catalog(s, args)
    html = render_template(
        "images.html",
        page=page,
        q=args.q,
        register_form=register or ImageRegisterForm(prefix="reg"),
        upload_form=upload or ImageUploadForm(prefix="up"),
        max_bytes=services().settings.max_image_bytes,
    )
    return html, status


@ui.get("/images")
@requires("viewer")
def images() -> tuple[str, int]:
    return _images_page()


@ui.post("/images/register")
@requires("operator")
def register_image() -> Response | tuple[str, int]:
    form = ImageRegisterForm(prefix="reg")
    if form.validate_on_submit():
        try:
            with services().db.transaction() as s:
                images_actions.register_image(
                    s,
                    actor(),
                    {
                        "name": (form.name.data or "").strip(),
                        "format": form.format.data,
                        "sha256": (form.sha256.data or "").strip().lower(),
                        "size": form.size.data,
                        "url": (form.url.data or "").strip(),
                    },
                )
        except ApiError as exc:
            apply_errors(form, exc)
        else:
            flash(f"Image {form.name.data} registered.", "info")
            return redirect(url_for("ui.images"))
    return _images_page(register=form, status=422)


@ui.post("/images/upload")
@requires("operator")
def upload_image() -> Response | tuple[str, int]:
    form = ImageUploadForm(prefix="up")
    if form.validate_on_submit():
        stream = form.file.data.stream
        sha = (form.sha256.data or "").strip().lower()
        if not sha:  # hash the spooled upload first; the datastore verifies it again
            digest = hashlib.sha256()
            while chunk := stream.read(1024 * 1024):
                digest.update(chunk)
            sha = digest.hexdigest()
            stream.seek(0)
        try:
            images_actions.upload_image(
                services(),
                actor(),
                {"name": (form.name.data or "").strip(), "format": form.format.data, "sha256": sha},
                stream,
            )
        except ApiError as exc:
            if exc.code == "sha256_mismatch":
                form.sha256.errors = [*form.sha256.errors, exc.message]
            else:
                apply_errors(form, exc)
        else:
            flash(f"Image {form.name.data} uploaded ({sha[:12]}…).", "info")
            return redirect(url_for("ui.images"))
    return _images_page(upload=form, status=422)
