"""UI view: the audit log (who did what to which object), filterable by actor, action,
target and day range (UTC), sortable and paginated."""

from __future__ import annotations

import datetime as dt

from flask import render_template, request

from controller.ui.blueprint import services, ui
from controller.ui.listing import list_args
from controller.ui.queries import AUDIT_SORTS, audit_page
from controller.ui.security import requires


def _day(name: str, errors: list[str]) -> dt.date | None:
    """The ``YYYY-MM-DD`` query argument ``name`` (an error for anything else)."""
    raw = request.args.get(name, "").strip()[:32]
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        errors.append(f"{name.capitalize()}: a date as YYYY-MM-DD (UTC), not {raw!r}.")
        return None


def _start(day: dt.date | None, days: int = 0) -> dt.datetime | None:
    return None if day is None else dt.datetime.combine(day, dt.time()) + dt.timedelta(days=days)


@ui.get("/audit")
@requires("viewer")
def audit() -> tuple[str, int]:
    actor = request.args.get("actor", "").strip()[:64]
    action = request.args.get("action", "").strip()[:64]
    target = request.args.get("target", "").strip()[:128]
    args = list_args(request.args, AUDIT_SORTS, "at", default_desc=True)
    errors: list[str] = []
    since, until = _day("since", errors), _day("until", errors)
    if since and until and until < since:
        errors.append("Until is before since: no day is in that range.")
    with services().db.transaction() as s:
        page, actions = audit_page(
            s, args, actor, action, target, _start(since), _start(until, days=1)
        )
    return render_template(
        "audit.html",
        page=page,
        actions=actions,
        actor=actor,
        action=action,
        target=target,
        since=since.isoformat() if since else "",
        until=until.isoformat() if until else "",
        errors=errors,
    ), 422 if errors else 200
