"""UI view: the audit log (who did what to which object), filterable and paginated."""

from __future__ import annotations

from flask import render_template, request

from controller.ui.blueprint import services, ui
from controller.ui.queries import audit_page
from controller.ui.security import requires


@ui.get("/audit")
@requires("viewer")
def audit() -> str:
    actor = request.args.get("actor", "").strip()[:64]
    action = request.args.get("action", "").strip()[:64]
    target = request.args.get("target", "").strip()[:128]
    page_no = max(request.args.get("page", 1, type=int) or 1, 1)
    with services().db.transaction() as s:
        page, actions = audit_page(s, actor, action, target, page_no)
    return render_template(
        "audit.html", page=page, actions=actions, actor=actor, action=action, target=target
    )
