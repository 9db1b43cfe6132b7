"""The one JSON error handler for every blueprint.

:class:`controller.errors.ApiError` and Werkzeug's HTTP errors (404, 405, 413 …) are
answered as ``{"error": {"code", "message", "details"}}``, keeping the headers the error
carries (``Allow`` on 405).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from controller.errors import ApiError

__all__ = ["kept_headers", "register_error_handlers"]

log = logging.getLogger(__name__)
DATABASE_RETRY_S = 2


def _body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return {"error": err}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ResponseReturnValue:
        headers = {}
        if exc.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        return jsonify(_body(exc.code, exc.message, exc.details)), exc.status, headers

    @app.errorhandler(OperationalError)
    def _database_away(exc: OperationalError) -> ResponseReturnValue:
        """The database went away or broke a deadlock: nothing was changed; try again."""
        log.warning("database unavailable for a request: %s", exc.orig or exc)
        body = _body("database_unavailable", "the database is not available; try again shortly")
        return jsonify(body), 503, {"Retry-After": str(DATABASE_RETRY_S)}

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(_body(code, exc.description or exc.name)), exc.code or 500, kept_headers(exc)


def kept_headers(exc: HTTPException) -> list[tuple[str, str]]:
    """The headers an HTTP error must carry besides its body (405's ``Allow``, 401's
    ``WWW-Authenticate``, 413's ``Retry-After`` …): everything but the content type."""
    return [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
