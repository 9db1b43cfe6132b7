"""Open a signed device request: envelope, body schema and single use, as API errors.

malformed envelope (also a NaN, infinite or out-of-range timestamp or number) → 422 ·
unknown signer → ``unknown_signer_status`` · signer's certificate expired or not yet
valid → 401 ``cert_not_valid`` · bad signature or stale → 401 · body not matching the
schema → 422 naming the field · replay → 401
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from cryptography import x509
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from attestation import envelope
from controller.errors import ApiError, validation_details
from controller.store.replay import remember_request

__all__ = ["open_request"]

M = TypeVar("M", bound=BaseModel)


def open_request(
    session: Session,
    wire: Any,
    resolve: Callable[[str], x509.Certificate | None],
    model: type[M],
    max_skew_s: float,
    unknown_signer_status: int = 403,
    remember: Callable[[Session, str, float], bool] | None = remember_request,
) -> tuple[envelope.Opened, M]:
    """``remember``: records the request id for single use (None: the caller checks it)."""
    try:
        opened = envelope.open_envelope(
            wire, resolve, max_skew_s=max_skew_s, check_signer_dates=True
        )
    except envelope.MalformedEnvelope as exc:
        raise ApiError(422, "bad_request", str(exc)) from exc
    except envelope.UnknownSigner as exc:
        raise ApiError(unknown_signer_status, "unknown_signer", str(exc)) from exc
    except envelope.SignerNotValid as exc:
        raise ApiError(401, "cert_not_valid", str(exc)) from exc
    except envelope.EnvelopeError as exc:
        raise ApiError(401, "bad_signature", str(exc)) from exc
    try:
        body = model.model_validate(opened.body)
    except ValidationError as exc:
        raise ApiError(422, "invalid_body", "body is invalid", validation_details(exc)) from exc
    if remember is not None and not remember(session, opened.request_id, max_skew_s):
        raise ApiError(401, "replayed", "request id already used")
    return opened, body
