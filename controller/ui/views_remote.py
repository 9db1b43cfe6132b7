"""UI views: remote access — open a console, exec or node shell in the browser (xterm.js),
the sessions and grants with their recordings (replay, download), approve and revoke.

    POST /ui/remote/open                        grant (reused when live) + session → the
                                                terminal page, the ticket in the URL fragment
    GET  /ui/remote                             sessions and grants
    GET  /ui/remote/sessions/<id>               the live terminal, or the recording's replay
    GET  /ui/remote/sessions/<id>/recording.cast  download (operator)
    POST /ui/remote/sessions/<id>/close · /ui/remote/grants/<id>/approve|revoke

The browser's WebSocket goes to ``/api/v1/remote/s/<id>/operator`` and proves itself with
the session's one-time ticket (no cookie is needed there).  The terminal pages allow inline
styles, which xterm.js needs for its layout; scripts stay same-origin files.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from controller.errors import ApiError
from controller.remote import grants, sessions
from controller.remote.recording import cast_file
from controller.store.models import Node
from controller.ui.blueprint import services, ui
from controller.ui.security import CSP, requires
from controller.web.context import actor

TERMINAL_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


def _role() -> str:
    return str(g.ui_user.role)


@ui.post("/remote/open")
@requires("operator")
def remote_open() -> Response:
    form = request.form
    kind = form.get("kind", "")
    body: dict[str, Any] = {"node": form.get("node", ""), "kind": kind, "reuse": True}
    if form.get("app"):
        body["app"] = form["app"]
    back = request.referrer or url_for("ui.remote")
    try:
        with services().db.transaction() as s:
            grant = grants.create(s, actor(), _role(), body)
            if grants.grant_state(grant) == "awaiting-approval":
                flash(f"Grant {grant.uuid} waits for a second person's approval.", "info")
                return redirect(url_for("ui.remote"))
        cols = request.form.get("cols", 120, type=int) or 120
        rows = request.form.get("rows", 32, type=int) or 32
        with services().db.transaction() as s:
            row, ticket = sessions.open_session(
                s,
                actor(),
                _role(),
                {"grant": grant.uuid, "tty": True, "cols": min(cols, 1000), "rows": min(rows, 500)},
            )
    except ApiError as exc:
        flash(exc.message, "error")
        return redirect(back)
    return redirect(url_for("ui.remote_session", session_id=row.uuid) + f"#ticket={ticket}")


@ui.get("/remote")
@requires("viewer")
def remote() -> str:
    with services().db.transaction() as s:
        sessions.sweep(s)
        rows = sessions.list_sessions(s, limit=100)
        grant_rows = grants.list_grants(s, limit=100)
        nodes = {n.id: n for n in s.query(Node).all()}
        views = [sessions.session_view(r, nodes.get(r.node_id)) for r in rows]
        grant_views = [grants.grant_view(r, nodes.get(r.node_id)) for r in grant_rows]
    return render_template("remote.html", sessions=views, grants=grant_views)


@ui.get("/remote/sessions/<session_id>")
@requires("operator")
def remote_session(session_id: str) -> tuple[str, int, dict[str, str]]:
    with services().db.transaction() as s:
        row = sessions.find_session(s, session_id)
        view = sessions.session_view(row, s.get(Node, row.node_id))
    html = render_template("remote_terminal.html", session=view)
    return html, 200, {"Content-Security-Policy": TERMINAL_CSP}


@ui.get("/remote/sessions/<session_id>/recording.cast")
@requires("operator")
def remote_recording(session_id: str) -> Response:
    with services().db.transaction() as s:
        text = cast_file(s, sessions.find_session(s, session_id))
    resp = Response(text, mimetype="application/x-asciicast")
    resp.headers["Content-Disposition"] = f'attachment; filename="session-{session_id}.cast"'
    return resp


@ui.post("/remote/sessions/<session_id>/close")
@requires("operator")
def remote_close(session_id: str) -> Response:
    return _act(
        lambda s: sessions.close_session(s, actor(), _role(), session_id), "Session closed."
    )


@ui.post("/remote/grants/<grant_id>/<action>")
@requires("operator")
def remote_grant(grant_id: str, action: str) -> Response:
    if action not in ("approve", "revoke"):
        raise ApiError(404, "not_found", f"no grant action {action!r}")
    fn = grants.approve if action == "approve" else grants.revoke
    return _act(lambda s: fn(s, actor(), _role(), grant_id), f"Grant {action}d.")


def _act(step: Any, done: str) -> Response:
    try:
        with services().db.transaction() as s:
            step(s)
    except ApiError as exc:
        flash(exc.message, "error")
    else:
        flash(done, "info")
    return redirect(url_for("ui.remote"))
