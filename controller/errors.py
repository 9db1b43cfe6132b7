"""The controller's one refusal type: every layer raises it, the HTTP layers answer it.

    ApiError(status, code, message, details)  → {"error": {"code", "message", "details"}}

``status`` is the HTTP status the refusal maps to (422 bad input, 404 unknown object,
409 conflict with stored state, 403 not allowed); nothing here imports the web stack
(:mod:`controller.web.errors` turns it into a response).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

__all__ = ["ApiError", "conflict", "field_error", "invalid", "validation_details"]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s
        """Sent as ``Retry-After`` (a temporary refusal: 503, 429)."""


def invalid(details: list[dict[str, str]], message: str = "request is invalid") -> ApiError:
    """422 ``invalid_body`` with per-field details (the API's one shape for bad bodies)."""
    return ApiError(422, "invalid_body", message, details)


def field_error(field: str, error: str) -> ApiError:
    """422 for one bad field (a rule of the body itself, stated in the API schema)."""
    return invalid([{"field": field, "error": error}])


def conflict(field: str, error: str, code: str = "conflict") -> ApiError:
    """409 for a field that is well-formed but conflicts with what is stored (an image or
    network that does not exist, a kind that cannot change, a ring out of range …)."""
    return ApiError(409, code, error, [{"field": field, "error": error}])


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as [{field, error, type}] with dotted field paths (``type`` is
    pydantic's error type: ``value_error`` for a rule's own sentence, else the kind of
    mismatch, e.g. ``string_pattern_mismatch``)."""
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "(body)",
            "error": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors()
    ]
