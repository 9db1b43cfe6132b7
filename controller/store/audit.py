"""The audit log and the node event stream, written inside the caller's transaction.

audit(s, actor, action, target, before=…, after=…, **detail)   who did what to what
event(s, node, kind, message)                                  a node's event stream
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from controller.store.models import AuditEvent, Event, Node

__all__ = ["audit", "event"]


def audit(
    session: Session,
    actor: str,
    action: str,
    target: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    **detail: Any,
) -> None:
    """Record who did what to which object, with its state before and after."""
    session.add(
        AuditEvent(
            actor=actor, action=action, target=target, detail=detail, before=before, after=after
        )
    )


def event(
    session: Session, node: Node | None, kind: str, message: str = "", app_uuid: str | None = None
) -> None:
    session.add(
        Event(
            node_id=node.id if node else None,
            kind=kind[:64],
            message=message[:1024],
            app_uuid=app_uuid,
        )
    )
