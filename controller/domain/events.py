"""The event stream of nodes and their app instances: what happened, in words, when.

    app_changes(s, node, before, after)   from two reports of a node: app state
                                          transitions (downloads, installs, starts, crash
                                          loops, errors) and config generations applied
    attestation(s, node, result, reason)  an attestation result
    presence(s, cutoff)                   nodes that went offline or came back (a job)
    query(s, node=, app=, kind=, since=)  the stream, newest first

Commands (restart, purge, reboot) are recorded where they are given
(:mod:`controller.domain.nodes`).  Events are facts for operators, not an audit of who
did what (that is the audit log).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from controller.domain.status import online_cutoff, reported
from controller.store.audit import event
from controller.store.models import Event, Node
from protocol.messages import AppState, AppStatus

__all__ = ["EventRow", "app_changes", "attestation", "presence", "query"]

MAX_EVENTS = 1000


@dataclass(frozen=True)
class EventRow:
    at: dt.datetime
    node: str | None
    app: str | None
    kind: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat() + "Z",
            "node": self.node,
            "app": self.app,
            "kind": self.kind,
            "message": self.message,
        }


def _describe(status: AppStatus) -> str:
    state = status.state
    if state == AppState.CRASHLOOP:
        why = status.last_stop_reason or (
            f"exit code {status.last_exit_code}" if status.last_exit_code is not None else ""
        )
        return f"crash-looping after {status.restarts} restarts" + (f" ({why})" if why else "")
    if state == AppState.ERROR:
        return f"ERROR: {status.error}" if status.error else "ERROR"
    return state.value


def app_changes(
    s: Session, node: Node, before: dict[str, Any] | None, after: dict[str, Any]
) -> int:
    """Record what changed between the node's previous report and this one; how many."""
    old, new = reported(before), reported(after)
    if new is None:
        return 0
    count = 0
    if old is None or old.config_generation != new.config_generation:
        event(s, node, "config.applied", f"running config generation {new.config_generation}")
        count += 1
    previous = {a.uuid: a for a in old.apps} if old else {}
    for status in new.apps:
        was = previous.pop(status.uuid, None)
        if was is not None and (was.state, was.error) == (status.state, status.error):
            continue
        if was is not None and was.state == status.state == AppState.CRASHLOOP:
            continue  # still looping: one event when it starts, not one per restart
        start = f"{was.state.value} → " if was is not None else ""
        event(
            s,
            node,
            f"app.{status.state.value.lower()}",
            f"{status.name}: {start}{_describe(status)}",
            status.uuid,
        )
        count += 1
    for gone in previous.values():
        event(s, node, "app.removed", f"{gone.name}: removed from the node", gone.uuid)
        count += 1
    return count


def attestation(s: Session, node: Node, result: str, reason: str = "") -> None:
    event(s, node, "attestation", f"{result}{': ' + reason if reason else ''}")


PRESENCE_BATCH = 500
"""Nodes judged per transaction: a whole fleet coming online at once (a controller back
after an outage, a bulk import's first polls) is many short transactions, each holding
few node rows, not one that holds them all."""


def presence(
    s: Session,
    config_interval_s: float,
    now: dt.datetime | None = None,
    limit: int = PRESENCE_BATCH,
) -> int:
    """Nodes whose last request crossed the offline line since the last look (at most
    ``limit``, lowest id first: the order every batch writer of node rows keeps): an
    event each and their presence recorded; how many changed."""
    cutoff = online_cutoff(config_interval_s, now)
    nodes = s.scalars(
        select(Node)
        .where(
            Node.state == "registered",
            ((Node.last_seen < cutoff) & (Node.presence != "offline"))
            | ((Node.last_seen >= cutoff) & (Node.presence != "online")),
        )
        .order_by(Node.id)
        .limit(limit)
    ).all()
    for node in nodes:
        online = node.last_seen is not None and node.last_seen >= cutoff
        if node.presence or not online:  # the first sighting of a new node is no news
            seen = node.last_seen.isoformat() + "Z" if node.last_seen else "never"
            event(
                s,
                node,
                "node.online" if online else "node.offline",
                "back online" if online else f"offline (last heard from {seen})",
            )
        # set on the object: an ORM update() per node re-evaluated its WHERE against
        # every node loaded in the session, quadratic (10,000 nodes: minutes of CPU)
        node.presence = "online" if online else "offline"
    return len(nodes)


def query(
    s: Session,
    *,
    node: Node | None = None,
    app_uuid: str | None = None,
    kind: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> list[EventRow]:
    stmt: Select[Any] = select(Event, Node.serial).outerjoin(Node, Node.id == Event.node_id)
    if node is not None:
        stmt = stmt.where(Event.node_id == node.id)
    if app_uuid is not None:
        stmt = stmt.where(Event.app_uuid == app_uuid)
    if kind:
        stmt = stmt.where(Event.kind.startswith(kind))
    if since is not None:
        stmt = stmt.where(Event.at >= since)
    rows = s.execute(stmt.order_by(Event.id.desc()).limit(min(limit, MAX_EVENTS))).all()
    apps = _app_names(s, {e.app_uuid for e, _ in rows if e.app_uuid})
    return [
        EventRow(e.at, serial, apps.get(e.app_uuid or ""), e.kind, e.message) for e, serial in rows
    ]


def _app_names(s: Session, uuids: set[str]) -> dict[str, str]:
    from controller.store.models import App

    if not uuids:
        return {}
    return {u: n for u, n in s.execute(select(App.uuid, App.name).where(App.uuid.in_(uuids)))}
