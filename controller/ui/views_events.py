"""UI view: the event stream (what happened on nodes and their apps), filterable by node,
app, kind and time, as ``GET /api/v1/events`` and ``outpost events``."""

from __future__ import annotations

import datetime as dt

from flask import render_template, request

from controller.domain import events
from controller.errors import ApiError
from controller.store.lookup import find_app, find_node
from controller.ui.blueprint import services, ui
from controller.ui.security import requires

LIMIT = 200
WINDOWS = {"": None, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
"""The time filter's choices (seconds back from now; "": any time)."""
KINDS = ("", "app.", "config.", "command.", "attestation", "node.", "registered")
"""The kind filter's choices: a prefix of the event kind ("": every kind)."""


@ui.get("/events")
@requires("viewer")
def events_page() -> tuple[str, int]:
    node_key = request.args.get("node", "").strip()[:128]
    app_name = request.args.get("app", "").strip()[:64]
    kind = request.args.get("kind", "")
    window = request.args.get("since", "")
    errors: list[str] = []
    if kind not in KINDS:
        errors.append(f"Kind: one of the listed kinds, not {kind[:32]!r}.")
        kind = ""
    if window not in WINDOWS:
        errors.append(f"Since: one of the listed times, not {window[:32]!r}.")
        window = ""
    seconds = WINDOWS[window]
    since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=seconds or 0)
    rows: list[events.EventRow] = []
    with services().db.transaction() as s:
        try:
            node = find_node(s, node_key) if node_key else None
            app = find_app(s, app_name) if app_name else None
        except ApiError as exc:
            errors.append(exc.message)
        else:
            rows = events.query(
                s,
                node=node,
                app_uuid=app.uuid if app else None,
                kind=kind or None,
                since=since if seconds else None,
                limit=LIMIT,
            )
    return render_template(
        "events.html",
        rows=rows,
        node=node_key,
        app=app_name,
        kind=kind,
        since=window,
        kinds=KINDS,
        windows=WINDOWS,
        limit=LIMIT,
        errors=errors,
    ), 422 if errors else 200
