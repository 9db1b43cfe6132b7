"""What request handlers of the API and the UI read from the request context.

    current_services()   the app's :class:`controller.services.Services`
    actor()              who is acting: ``token:<name>`` (API) or ``user:<name>`` (UI)
    json_body()          the request's JSON body (422 when there is none)

Nothing below ``controller.api`` and ``controller.ui`` touches the request: they pass
the services and the actor on explicitly.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, g, request

from controller.errors import ApiError
from controller.services import Services

__all__ = ["actor", "current_services", "json_body", "svc"]


def current_services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions["outpost"]  # type: ignore[no-any-return]


svc = current_services


def actor() -> str:
    """The authenticated caller of this request (set by the API's or the UI's auth)."""
    return str(g.actor)


def json_body() -> Any:
    """The request's JSON body; 422 when there is none."""
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(422, "bad_request", "body must be a JSON object")
    return data
