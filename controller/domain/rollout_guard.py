"""While a rollout holds an app, the app changes only through the rollout."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.errors import ApiError
from controller.store.models import ACTIVE, App, Rollout

__all__ = ["refuse_if_rolling"]


def refuse_if_rolling(s: Session, app: App) -> None:
    """409 ``rollout_in_progress`` when an active rollout holds ``app``."""
    active = s.scalar(select(Rollout).where(Rollout.app_id == app.id, Rollout.state.in_(ACTIVE)))
    if active is not None:
        raise ApiError(
            409,
            "rollout_in_progress",
            f"app {app.name!r} is being rolled out (rollout {active.id}, {active.state});"
            " roll it back or wait for it to finish",
        )
