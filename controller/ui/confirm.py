"""Ask first, then act: the confirmation page shared by the UI's irreversible actions.

    GET, or POST without confirmed=yes   the page (``ask.html``): what the action will do
    POST with confirmed=yes              the domain action in one transaction; its outcome
                                         flashed in plain words (a refusal changes nothing)

The action is the operator API's own domain function (it checks and audits); the page only
reads, to say in words what will happen and when the controller will refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import flash, redirect, render_template, request
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from controller.errors import ApiError
from controller.ui.blueprint import services
from controller.ui.forms import ConfirmForm

__all__ = ["Ask", "ask_then_act", "in_use_warning"]


@dataclass(frozen=True)
class Ask:
    """What the confirmation page says."""

    title: str
    """The action, shown as a question: "Delete app web"."""
    button: str
    """The confirming button: "Yes, delete app web"."""
    facts: list[str] = field(default_factory=list)
    """What will happen, one sentence each."""
    warning: str = ""
    """Why the controller will refuse, when that is known already."""
    danger: bool = True


def in_use_warning(what: str, users: list[str], fix: str) -> str:
    """Why a delete of ``what`` will be refused while the apps ``users`` use it ("" when
    none does); ``fix`` names them as ``{them}``."""
    if not users:
        return ""
    one = len(users) == 1
    return (
        f"{what}: refused while an app uses it, and {', '.join(users)}"
        f" {'uses' if one else 'use'} it now. "
        + fix.format(them="that app" if one else "those apps")
    )


def ask_then_act(
    form: ConfirmForm,
    ask: Callable[[Session], Ask],
    act: Callable[[Session], object],
    *,
    done: str,
    refused: str,
    back: str,
    after: str,
) -> Response | tuple[str, int]:
    """The confirmation page, or (confirmed) ``act``: ``done`` is flashed and the browser
    goes to ``after``; a refusal is flashed as "``refused``: why." and it goes ``back``
    (to ``after`` when the object is gone).  A confirmed form that fails validation (a
    missing reason) shows the page again with the errors next to the fields (422)."""
    confirmed = request.method == "POST" and form.confirmed.data == "yes"
    if confirmed and form.validate():
        try:
            with services().db.transaction() as s:
                act(s)
        except ApiError as exc:
            flash(f"{refused}: {exc.message.rstrip('.')}.", "error")
            return redirect(after if exc.status == 404 else back)
        flash(done, "info")
        return redirect(after)
    with services().db.transaction() as s:
        page = ask(s)
    html = render_template("ask.html", ask=page, form=form, action=request.path, back=back)
    return html, 422 if confirmed else 200
