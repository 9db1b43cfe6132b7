"""What request handlers of the API and the UI read from the request context.

    current_services()   the app's :class:`controller.services.Services`
    actor()              who is acting: ``token:<name>`` (API) or ``user:<name>`` (UI)

Request bodies are read by :mod:`controller.web.body` (bounded, strict JSON).

Nothing below ``controller.api`` and ``controller.ui`` touches the request: they pass
the services and the actor on explicitly.
"""

from __future__ import annotations

from flask import current_app, g

from controller.services import Services

__all__ = ["actor", "current_services", "svc"]


def current_services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions["outpost"]  # type: ignore[no-any-return]


svc = current_services


def actor() -> str:
    """The authenticated caller of this request (set by the API's or the UI's auth)."""
    return str(g.actor)
