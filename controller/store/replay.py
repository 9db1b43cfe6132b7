"""Single use of signed request ids: a request id seen within the skew window is a replay."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.store.models import SeenRequest, utcnow

__all__ = ["remember_request"]


def remember_request(session: Session, request_id: str, max_skew_s: float) -> bool:
    """Record ``request_id``; False when it was already seen (a replay)."""
    now = utcnow()  # expired ids are pruned by a background job (store.housekeeping)
    try:
        with session.begin_nested():
            session.add(
                SeenRequest(
                    request_id=request_id,
                    expires_at=now + dt.timedelta(seconds=2 * max_skew_s),
                )
            )
    except IntegrityError:
        return False
    return True
