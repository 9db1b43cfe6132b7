"""Waking a node's session poll and the relays of its sessions.

The config notifier (:mod:`controller.store.notify`) already carries wake-ups between
replicas (PostgreSQL ``NOTIFY``) and within a process; remote access uses it with its
own keys, the negated node id, so a session offered, a grant revoked or a session closed
wakes the node's parked session poll and every relay of that node's sessions without
waking its config long-poll.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from controller.store import notify
from controller.store.notify import ConfigNotifier

__all__ = ["remote_key", "wait", "wake"]


def remote_key(node_id: int) -> int:
    """The notifier key of a node's remote-access wake-ups (node ids start at 1)."""
    return -node_id


def wake(session: Session, node_id: int) -> None:
    """Wake the node's session poll and its relays once this transaction commits."""
    notify.changed(session, remote_key(node_id))


def wait(notifier: ConfigNotifier, node_id: int, since: int, timeout: float) -> bool:
    """Block until a wake-up for the node after ``since`` (True) or ``timeout`` (False)."""
    if timeout <= 0:
        return False
    return notifier.wait(remote_key(node_id), since, timeout)
