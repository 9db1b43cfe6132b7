"""UI views: the git source — its revision in force, last good sync, the last refused
revision with each error's file:line and reason, each node's revision; set it and delete
it (admin, as PUT / DELETE /api/v1/git/source), sync now (operator, POST /git/sync).

The URL is shown without credentials (``split_credentials`` keeps them apart); a stored
URL sent back unchanged keeps them, and an error text never shows them."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from controller.errors import ApiError
from controller.gitops import source
from controller.gitops.sync import sync
from controller.store.models import GitSource
from controller.ui.blueprint import apply_errors, services, ui
from controller.ui.confirm import Ask, ask_then_act
from controller.ui.forms import ConfirmForm, GitSourceForm
from controller.ui.security import requires
from controller.web.context import actor

GIT_FIELDS = {"url": "git_url", "path": "subpath", "(body)": "allowed_signers"}


def _status(s: Session) -> dict[str, Any] | None:
    """``git_status`` with any kept credentials blanked out of the error texts."""
    status = source.git_status(s)
    src = s.get(GitSource, 1)
    if status is None or src is None or not src.credentials:
        return status
    secrets = [src.credentials, *src.credentials.split(":", 1)]
    errors = []
    for error in status["errors"] or []:
        reason = str(error.get("reason", ""))
        for secret in (x for x in secrets if x):
            reason = reason.replace(secret, "***")
        errors.append({**error, "reason": reason})
    return {**status, "errors": errors}


def _page(form: GitSourceForm, status: int = 200) -> tuple[str, int]:
    with services().db.transaction() as s:
        git = _status(s)
    html = render_template("git.html", git=git, form=ConfirmForm(), source_form=form)
    return html, status


@ui.get("/git")
@requires("viewer")
def git() -> tuple[str, int]:
    form = GitSourceForm(formdata=None)
    with services().db.transaction() as s:
        src = s.get(GitSource, 1)
        if src is not None:  # the URL as stored: without credentials
            form.git_url.data, form.branch.data, form.subpath.data = src.url, src.branch, src.path
            form.interval_s.data, form.verify_signatures.data = (
                src.interval_s,
                src.verify_signatures,
            )
            form.allowed_signers.data = src.allowed_signers
    return _page(form)


@ui.post("/git/source")
@requires("admin")
def git_source() -> Response | tuple[str, int]:
    """Set (or change) the source like PUT /api/v1/git/source; a refusal shows the form
    again with the problem next to its field and changes nothing."""
    form = GitSourceForm()
    if form.validate_on_submit():
        try:
            with services().db.transaction() as s:
                src = s.get(GitSource, 1)
                stored = (src.url, source.fetch_url(src)) if src and src.credentials else ("", "")
                source.set_source(s, actor(), form.to_body(*stored))
        except ApiError as exc:
            apply_errors(form, exc, GIT_FIELDS)
        else:
            flash("Git source saved. Sync now to apply its revision.", "info")
            return redirect(url_for("ui.git"))
    form.git_url.data = source.split_credentials(form.git_url.data or "")[0]
    return _page(form, 422 if request.method == "POST" else 200)


@ui.route("/git/delete", methods=["GET", "POST"])
@requires("admin")
def git_delete() -> Response | tuple[str, int]:
    def ask(s: Session) -> Ask:
        src = s.get(GitSource, 1)
        if src is None:
            raise ApiError(404, "not_found", "no git source is set")
        return Ask(
            "Stop following the git source",
            "Yes, stop following it",
            [
                f"The controller stops following {src.url} ({src.branch}).",
                "The apps, networks and nodes it defined stay as they are and become"
                " editable here and through the API.",
            ],
        )

    return ask_then_act(
        ConfirmForm(),
        ask,
        lambda s: source.delete_source(s, actor()),
        done="The git source is deleted; its objects stay.",
        refused="Delete refused",
        back=url_for("ui.git"),
        after=url_for("ui.git"),
    )


@ui.post("/git/sync")
@requires("operator")
def git_sync() -> Response:
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash("The form was not accepted; reload the page and try again.", "error")
        return redirect(url_for("ui.git"))
    try:
        result = sync(services())
    except ApiError as exc:
        flash(exc.message, "error")
        return redirect(url_for("ui.git"))
    if result.errors:
        count = len(result.errors)
        flash(
            f"The revision was refused ({count} error{'' if count == 1 else 's'}); see below.",
            "error",
        )
    elif result.applied:
        flash(f"Revision {result.revision[:12]} applied ({len(result.changes)} changes).", "info")
    else:
        flash(f"Up to date at {result.revision[:12]}.", "info")
    return redirect(url_for("ui.git"))
