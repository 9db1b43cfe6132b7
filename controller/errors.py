"""The API's one exception type and the JSON error handler for every blueprint.

    ApiError(status, code, message)  → {"error": {"code", "message", "details"}}

Werkzeug's HTTP errors (404, 405, 413 …) are answered in the same JSON shape.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

__all__ = ["ApiError", "field_error", "invalid", "register_error_handlers", "validation_details"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def invalid(details: list[dict[str, str]], message: str = "request is invalid") -> ApiError:
    """422 ``invalid_body`` with per-field details (the API's one shape for bad bodies)."""
    return ApiError(422, "invalid_body", message, details)


def field_error(field: str, error: str) -> ApiError:
    """422 for one bad field."""
    return invalid([{"field": field, "error": error}])


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as [{field, error}] with dotted field paths."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "error": err["msg"]}
        for err in exc.errors()
    ]


def _body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return {"error": err}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):  # type: ignore[no-untyped-def]
        return jsonify(_body(exc.code, exc.message, exc.details)), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(_body(code, exc.description or exc.name)), exc.code or 500
