"""The one JSON error handler for every blueprint.

:class:`controller.errors.ApiError` and Werkzeug's HTTP errors (404, 405, 413 …) are
answered as ``{"error": {"code", "message", "details"}}``, keeping the headers the error
carries (``Allow`` on 405).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from controller.errors import ApiError

__all__ = ["kept_headers", "register_error_handlers"]


def _body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return {"error": err}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ResponseReturnValue:
        return jsonify(_body(exc.code, exc.message, exc.details)), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(_body(code, exc.description or exc.name)), exc.code or 500, kept_headers(exc)


def kept_headers(exc: HTTPException) -> list[tuple[str, str]]:
    """The headers an HTTP error must carry besides its body (405's ``Allow``, 401's
    ``WWW-Authenticate``, 413's ``Retry-After`` …): everything but the content type."""
    return [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
