"""What every operator action does besides its own work: validate a body, wake nodes.

    parse(Model, data)          → the validated body, or 422 with field details
    changed(s, node | None)     wake that node's (every node's) long-polls on commit

Auditing is :mod:`controller.store.audit`; looking objects up :mod:`controller.store.lookup`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.orm import Session

from controller.errors import ApiError, invalid, validation_details
from controller.store import notify
from controller.store.models import Node
from protocol.model_base import NoBoolNumbers

__all__ = ["Body", "changed", "parse"]


class Body(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def parse(model: type[BaseModel], data: Any) -> Any:
    if data is None:
        raise ApiError(422, "bad_request", "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(validation_details(exc)) from exc


def changed(session: Session, node: Node | None = None) -> None:
    """Wake the long-polls of ``node`` (of every node when None) once this commits."""
    notify.changed(session, node.id if node is not None else notify.ALL)
