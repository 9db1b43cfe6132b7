"""Read side of the web UI: fleet summary, node lists (search, filters, pages), node detail,
apps, images, audit.  Queries only, inside the caller's session; plain dicts out.  Lists
are sorted and paged in SQL through ``controller.ui.listing``.

A node is *online* when it made a device request within three config intervals
(plus a grace period); its attestation state comes from ``NodeTrust`` (no row:
unattested).  Everything that must scale with the fleet is paginated in SQL;
counts and "needs attention" are one pass over a narrow row per node.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, not_, or_, select
from sqlalchemy.orm import Session

from controller.domain.status import AppState, app_statuses
from controller.store.models import (
    App,
    Assignment,
    AuditEvent,
    Image,
    MetricSample,
    Node,
    NodeTrust,
    PendingRegistration,
)
from controller.ui.listing import (
    ListArgs,
    Listing,
    SortColumn,
    contains,
    page_of,
    paginate,
    sorted_by,
)
from protocol.messages import AppStatus

__all__ = [
    "FILTERS",
    "PAGE_SIZE",
    "Page",
    "app_instances",
    "apps_catalog",
    "audit_page",
    "fleet_summary",
    "images_catalog",
    "metric_samples",
    "node_apps",
    "node_list",
    "node_status",
]

PAGE_SIZE = 50
FILTERS = (
    "online",
    "offline",
    "claimed",
    "attested",
    "unattested",
    "failed",
    "revoked",
    "attention",
)


@dataclass(frozen=True)
class Page:
    items: list[Any]
    page: int
    pages: int
    total: int

    @staticmethod
    def clamp(page: int, total: int, size: int = PAGE_SIZE) -> tuple[int, int]:
        pages = max(1, -(-total // size))
        return min(max(page, 1), pages), pages


TROUBLE = (AppState.ERROR, AppState.CRASHLOOP)
"""App states that put a node on the attention list."""


def _app_trouble(status: AppStatus) -> str:
    """One line for the attention list: what is wrong with the app and since when."""
    if status.state == AppState.CRASHLOOP:
        why = status.last_stop_reason or (
            f"exit code {status.last_exit_code}" if status.last_exit_code is not None else ""
        )
        detail = f"{status.restarts} restarts" + (f", {why}" if why else "")
        return f"app {status.name} crash-looping ({detail})"
    return f"app {status.name} in ERROR{': ' + status.error[:120] if status.error else ''}"


def node_status(
    state: str,
    last_seen: dt.datetime | None,
    trust_state: str | None,
    revoked: bool,
    info: dict[str, Any] | None,
    cutoff: dt.datetime,
) -> dict[str, Any]:
    """Connection, attestation, app states and the reasons the node needs attention."""
    registered = state == "registered"
    connection = (
        "claimed"
        if not registered
        else "online"
        if last_seen and last_seen >= cutoff
        else "offline"
    )
    attestation = "revoked" if revoked else (trust_state or "unattested") if registered else ""
    apps = list(app_statuses(info).values())
    attention = []
    if connection == "offline":
        attention.append("offline")
    if attestation in ("failed", "revoked"):
        attention.append(f"attestation {attestation}")
    attention += [_app_trouble(a) for a in apps if a.state in TROUBLE]
    return {
        "connection": connection,
        "attestation": attestation,
        "apps": Counter(a.state.value for a in apps),
        "attention": attention,
    }


def _node_rows() -> Any:
    """The columns a node's list row and status are made from (``_row_json`` reads them)."""
    return select(
        Node.serial,
        Node.uuid,
        Node.state,
        Node.last_seen,
        Node.info,
        Node.labels,
        NodeTrust.state,
        NodeTrust.revoked_at,
        Node.claimed_at,
    ).outerjoin(NodeTrust, NodeTrust.node_id == Node.id)


def _status_rows(s: Session, where: Any = None) -> list[Any]:
    stmt = _node_rows()
    if where is not None:
        stmt = stmt.where(where)
    return list(s.execute(stmt.order_by(Node.serial)).all())


def _row_json(row: Any, cutoff: dt.datetime) -> dict[str, Any]:
    serial, uuid, state, last_seen, info, labels, trust_state, revoked_at, claimed_at = row
    status = node_status(state, last_seen, trust_state, revoked_at is not None, info, cutoff)
    return {
        "serial": serial,
        "uuid": uuid,
        "state": state,
        "last_seen": last_seen,
        "claimed_at": claimed_at,
        "labels": labels or {},
        **status,
    }


def fleet_summary(s: Session, cutoff: dt.datetime, attention_limit: int = 20) -> dict[str, Any]:
    """Counts by state, app states, nodes needing attention, pending registrations."""
    counts: Counter[str] = Counter()
    app_states: Counter[str] = Counter()
    attention: list[dict[str, Any]] = []
    attention_total = 0
    for row in _status_rows(s):
        node = _row_json(row, cutoff)
        counts["total"] += 1
        counts[node["connection"]] += 1
        if node["attestation"]:
            counts[node["attestation"]] += 1
        app_states.update(node["apps"])
        if node["attention"]:
            attention_total += 1
            if len(attention) < attention_limit:
                attention.append(node)
    counts["pending"] = s.scalar(select(func.count()).select_from(PendingRegistration)) or 0
    counts["apps"] = s.scalar(select(func.count()).select_from(App)) or 0
    return {
        "counts": counts,
        "app_states": dict(sorted(app_states.items())),
        "attention": attention,
        "attention_total": attention_total,
    }


def _filter_clause(name: str, cutoff: dt.datetime) -> ColumnElement[bool] | None:
    registered = Node.state == "registered"
    not_revoked = NodeTrust.revoked_at.is_(None)
    fresh = and_(Node.last_seen.is_not(None), Node.last_seen >= cutoff)
    return {
        "online": and_(registered, fresh),
        "offline": and_(registered, not_(fresh)),
        "claimed": Node.state == "claimed",
        "attested": and_(registered, NodeTrust.state == "attested", not_revoked),
        "failed": and_(registered, NodeTrust.state == "failed", not_revoked),
        "unattested": and_(
            registered,
            or_(NodeTrust.node_id.is_(None), NodeTrust.state == "unattested"),
            not_revoked,
        ),
        "revoked": NodeTrust.revoked_at.is_not(None),
    }.get(name)


NODE_SORTS: dict[str, tuple[SortColumn, ...]] = {
    "serial": (Node.serial,),
    "connection": (Node.state, Node.last_seen),  # claimed, then the longest unseen first
    "attestation": (
        case(
            (NodeTrust.revoked_at.is_not(None), "revoked"),
            else_=func.coalesce(NodeTrust.state, "unattested"),
        ),
    ),
    "last_seen": (Node.last_seen,),
    "claimed": (Node.claimed_at,),
}


def node_list(s: Session, cutoff: dt.datetime, args: ListArgs, status: str = "") -> Listing[Any]:
    """One page of nodes: ``args.q`` matches serial/uuid (substring) or ``key=value``
    labels; sorted by ``NODE_SORTS[args.sort]`` (then the serial) in SQL."""
    q = args.q
    where: list[Any] = []
    label: tuple[str, str] | None = None
    if q and "=" in q:
        key, _, value = q.partition("=")
        label = (key.strip(), value.strip())
    elif q:
        where.append(contains(q, Node.serial, Node.uuid))
    clause = _filter_clause(status, cutoff)
    if clause is not None:
        where.append(clause)
    stmt = _node_rows()
    if where:
        stmt = stmt.where(and_(*where))
    if label is None and status != "attention":
        page = paginate(s, stmt, args, NODE_SORTS, Node.serial)
        return replace(page, items=[_row_json(r, cutoff) for r in page.items])
    # label search and "needs attention" look inside JSON: sorted in SQL, filtered here
    rows = s.execute(sorted_by(stmt, args, NODE_SORTS, Node.serial)).all()
    nodes = [_row_json(r, cutoff) for r in rows]
    if label is not None:
        nodes = [n for n in nodes if str(n["labels"].get(label[0], "\0")) == label[1]]
    if status == "attention":
        nodes = [n for n in nodes if n["attention"]]
    return page_of(nodes, args)


def node_apps(s: Session, node: Node) -> list[dict[str, Any]]:
    """The node's app instances with the state the agent reports (and reported-only apps)."""
    reported = app_statuses(node.info)
    rows = s.execute(
        select(App, Image, Assignment)
        .join(Assignment, Assignment.app_id == App.id)
        .join(Image, Image.id == App.image_id)
        .where(Assignment.node_id == node.id)
        .order_by(App.name)
    ).all()
    out = []
    for app, image, inst in rows:
        status = reported.pop(app.uuid, None)
        out.append(
            {
                "name": app.name,
                "kind": app.kind,
                "image": image.name,
                "image_size": image.size,
                "explicit": inst.explicit,
                "restart_counter": inst.restart_counter,
                "purge_counter": inst.purge_counter,
                "state": status.state if status else "—",
                "error": status.error if status else "",
                "progress": _progress(status, image.size),
                "health": status.health if status else None,
                "restarts": status.restarts if status else 0,
                "waiting": status.waiting if status else "",
                "assigned": True,
            }
        )
    for status in reported.values():  # still on the node, no longer assigned (being removed)
        out.append(
            {
                "name": status.name,
                "state": status.state,
                "error": status.error,
                "progress": None,
                "health": status.health,
                "restarts": status.restarts,
                "waiting": status.waiting,
                "assigned": False,
            }
        )
    return out


def _progress(status: AppStatus | None, size: int) -> tuple[int, int, float | None] | None:
    """(done, total, bytes/s or None) of a download the agent reports, if it reports one."""
    if status is None:
        return None
    total = status.progress_total_bytes or size
    if status.progress_bytes is not None and total > 0:
        return min(status.progress_bytes, total), total, status.progress_rate_bps
    if status.progress_pct is None or total <= 0:
        return None
    return total * status.progress_pct // 100, total, status.progress_rate_bps


def metric_samples(s: Session, node: Node, since: dt.datetime) -> list[dict[str, Any]]:
    rows = s.scalars(
        select(MetricSample.data)
        .where(MetricSample.node_id == node.id, MetricSample.at >= since)
        .order_by(MetricSample.id)
    ).all()
    return [r for r in rows if isinstance(r, dict)]


APP_INSTANCES = (
    select(func.count())
    .where(Assignment.app_id == App.id)
    .correlate(App)
    .scalar_subquery()
    .label("instances")
)
APP_SORTS: dict[str, tuple[SortColumn, ...]] = {
    "name": (App.name,),
    "kind": (App.kind,),
    "image": (Image.name,),
    "instances": (APP_INSTANCES,),
    "created": (App.created_at,),
}


def apps_catalog(s: Session, args: ListArgs) -> Listing[dict[str, Any]]:
    """One page of apps (``args.q`` matches the app's or its image's name) with its image
    and how many instances are in which state (read for this page's apps only)."""
    stmt = select(App, Image, APP_INSTANCES).join(Image, Image.id == App.image_id)
    if args.q:
        stmt = stmt.where(contains(args.q, App.name, Image.name))
    page = paginate(s, stmt, args, APP_SORTS, App.id)
    catalog = {
        app.id: {"app": app, "image": image, "instances": count, "states": Counter()}
        for app, image, count in page.items
    }
    by_uuid = {row["app"].uuid: app_id for app_id, row in catalog.items()}
    on_page = select(Assignment.node_id).where(Assignment.app_id.in_(catalog))
    reported: dict[tuple[int, int], str] = {}  # (node id, app id) → state; each info read once
    for node_id, info in s.execute(select(Node.id, Node.info).where(Node.id.in_(on_page))):
        for uuid, status in app_statuses(info).items():
            app_id = by_uuid.get(uuid)
            if app_id is not None:
                reported[(node_id, app_id)] = status.state.value
    for node_id, app_id in s.execute(
        select(Assignment.node_id, Assignment.app_id).where(Assignment.app_id.in_(catalog))
    ):
        catalog[app_id]["states"][reported.get((node_id, app_id), "not reported")] += 1
    return replace(page, items=list(catalog.values()))


def app_instances(s: Session, app: App, page: int = 1) -> Page:
    """Where an app runs (explicitly or by label) and the state each node reports."""
    total = (
        s.scalar(select(func.count()).select_from(Assignment).where(Assignment.app_id == app.id))
        or 0
    )
    page, pages = Page.clamp(page, total)
    rows = s.execute(
        select(Node.serial, Node.info, Assignment)
        .join(Assignment, Assignment.node_id == Node.id)
        .where(Assignment.app_id == app.id)
        .order_by(Node.serial)
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    items = []
    for serial, info, inst in rows:
        status = app_statuses(info).get(app.uuid)
        items.append(
            {
                "node": serial,
                "explicit": inst.explicit,
                "state": status.state if status else "not reported",
                "error": status.error if status else "",
            }
        )
    return Page(items, page, pages, total)


IMAGE_SORTS: dict[str, tuple[SortColumn, ...]] = {
    "name": (Image.name,),
    "format": (Image.format,),
    "size": (Image.size,),
    "created": (Image.created_at,),
}


def images_catalog(s: Session, args: ListArgs) -> Listing[dict[str, Any]]:
    """One page of images (``args.q`` matches name or format) with the apps using them."""
    stmt = select(Image)
    if args.q:
        stmt = stmt.where(contains(args.q, Image.name, Image.format))
    page = paginate(s, stmt, args, IMAGE_SORTS, Image.id)
    images = [image for (image,) in page.items]
    users: dict[int, list[str]] = {}
    for image_id, name in s.execute(
        select(App.image_id, App.name)
        .where(App.image_id.in_([i.id for i in images]))
        .order_by(App.name)
    ):
        users.setdefault(image_id, []).append(name)
    return replace(page, items=[{"image": i, "apps": users.get(i.id, [])} for i in images])


AUDIT_SORTS: dict[str, tuple[SortColumn, ...]] = {
    "at": (AuditEvent.at,),
    "actor": (AuditEvent.actor,),
    "action": (AuditEvent.action,),
    "target": (AuditEvent.target,),
}


def audit_page(
    s: Session,
    args: ListArgs,
    actor: str = "",
    action: str = "",
    target: str = "",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> tuple[Listing[AuditEvent], list[str]]:
    """Audit events (newest first unless sorted otherwise); actor/target match substrings,
    action exactly, and the time ``since`` ≤ at < ``until`` (naive UTC) when given."""
    where: list[ColumnElement[bool]] = []
    if since is not None:
        where.append(AuditEvent.at >= since)
    if until is not None:
        where.append(AuditEvent.at < until)
    for column, value in ((AuditEvent.actor, actor), (AuditEvent.target, target)):
        if value:
            where.append(contains(value, column))
    if action:
        where.append(AuditEvent.action == action)
    stmt = select(AuditEvent)
    if where:
        stmt = stmt.where(and_(*where))
    page = paginate(s, stmt, args, AUDIT_SORTS, AuditEvent.id)
    actions = list(s.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
    return replace(page, items=[e for (e,) in page.items]), actions
