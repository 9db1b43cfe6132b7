"""PCI/GPU adapters per node, from the inventory the node reports, and the assignment rule.

An app's gpu/pci adapters are resolved against the node's reported inventory with the same
rule the agent applies before start (:mod:`protocol.pci_groups`): the device must exist,
the IOMMU must be on and its group must be assignable as a whole.  On one node no PCI
function may be passed through to two apps.  Violations are refused with a 422 naming the
app, the adapter and the reason; a node that has not reported its PCI inventory yet gets
no adapters at all (the check cannot be made).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.labels import effective_labels
from controller.errors import ApiError
from controller.store.models import App, Assignment, Node
from protocol.desired_state import Adapter
from protocol.inventory import NodeInventory, PciDevice
from protocol.pci_groups import PCI_KINDS, AdapterRefused, resolve_functions

__all__ = [
    "apps_on",
    "check_app_adapters",
    "check_assignment",
    "check_node_adapters",
    "node_adapters",
    "nodes_of_app",
]


def _inventory(node: Node) -> NodeInventory | None:
    """The node's PCI inventory; None when it never reported one (or it is unreadable)."""
    raw = node.inventory or {}
    if "pci" not in raw:
        return None
    try:
        return NodeInventory.model_validate(raw)
    except ValidationError:
        return None


def _devices(inv: NodeInventory) -> dict[str, PciDevice]:
    return {d.address: d for d in inv.pci}


def _adapters(app: App) -> list[Adapter]:
    return [
        Adapter.model_validate(a)
        for a in (app.spec or {}).get("adapters") or []
        if a.get("kind") in PCI_KINDS
    ]


def _selector_matches(selector: dict[str, Any] | None, labels: dict[str, Any]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def apps_on(s: Session, node: Node) -> list[App]:
    """Apps the node runs or will run: assigned (explicitly or by label) or selected now."""
    assigned = s.scalars(
        select(App)
        .join(Assignment, Assignment.app_id == App.id)
        .where(Assignment.node_id == node.id)
    ).all()
    selected = [
        app
        for app in s.scalars(select(App).where(App.label_selector.is_not(None)))
        if _selector_matches(app.label_selector, effective_labels(node))
    ]
    return sorted({app.id: app for app in [*assigned, *selected]}.values(), key=lambda a: a.name)


def nodes_of_app(s: Session, app: App) -> list[Node]:
    """Nodes the app runs on or will run on (assignments and its label selector)."""
    assigned = s.scalars(
        select(Node)
        .join(Assignment, Assignment.node_id == Node.id)
        .where(Assignment.app_id == app.id)
    ).all()
    selected = (
        [
            n
            for n in s.scalars(select(Node))
            if _selector_matches(app.label_selector, effective_labels(n))
        ]
        if app.label_selector
        else []
    )
    return sorted({n.id: n for n in [*assigned, *selected]}.values(), key=lambda n: n.serial)


def _refuse(message: str) -> Exception:
    return ApiError(409, "conflict", message, [{"field": "adapters", "error": message}])


def check_node_adapters(node: Node, apps: Iterable[App]) -> None:
    """422 unless every app's gpu/pci adapters resolve on ``node`` and none share a function."""
    owner: dict[str, str] = {}
    inv: NodeInventory | None = None
    for app in apps:
        adapters = _adapters(app)
        if not adapters:
            continue
        if inv is None:
            inv = _inventory(node)
        if inv is None and all(a.optional for a in adapters):
            continue  # runs without them until the node reports what it has
        if inv is None:
            raise _refuse(
                f"app {app.name!r} asks for PCI adapters but node {node.serial!r} has not "
                "reported its PCI inventory yet"
            )
        try:
            functions = resolve_functions(_devices(inv), inv.iommu, adapters)
        except AdapterRefused as exc:
            raise _refuse(f"app {app.name!r} on node {node.serial!r}: {exc}") from exc
        for address in functions:
            if address in owner and owner[address] != app.name:
                raise _refuse(
                    f"app {app.name!r} on node {node.serial!r}: PCI device {address} is "
                    f"already passed through to app {owner[address]!r}"
                )
            owner[address] = app.name


def check_assignment(s: Session, node: Node, app: App) -> None:
    """Before ``app`` is assigned to ``node``: its adapters fit beside the node's other apps."""
    if _adapters(app):
        check_node_adapters(node, [*(a for a in apps_on(s, node) if a.id != app.id), app])


def check_app_adapters(s: Session, app: App) -> None:
    """After ``app`` changed (spec or selector): it still fits on every node it runs on."""
    if not _adapters(app):
        return
    for node in nodes_of_app(s, app):
        check_node_adapters(node, [*(a for a in apps_on(s, node) if a.id != app.id), app])


def _users(s: Session, node: Node, inv: NodeInventory) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    devices = _devices(inv)
    for app in apps_on(s, node):
        try:
            functions = resolve_functions(devices, inv.iommu, _adapters(app))
        except AdapterRefused:
            continue
        for address in functions:
            users.setdefault(address, []).append(app.name)
    return users


def node_adapters(s: Session, node: Node) -> dict[str, Any]:
    """The node's PCI endpoints (bridges left out), each with whether and how it can be
    passed through, the functions that would go with it, and the apps using it."""
    inv = _inventory(node)
    out: dict[str, Any] = {
        "node": node.serial,
        "reported": inv is not None,
        "iommu": bool(inv and inv.iommu),
        "adapters": [],
    }
    if inv is None:
        return out
    devices = _devices(inv)
    users = _users(s, node, inv)
    for dev in inv.pci:
        if dev.class_code.startswith("06"):  # host, ISA and PCI bridges are not adapters
            continue
        adapter = (
            Adapter(kind="gpu", match=dev.address)
            if dev.is_gpu
            else Adapter(kind="pci", match=dev.address)
        )
        kind = adapter.kind
        try:
            functions: Sequence[str] = resolve_functions(devices, inv.iommu, [adapter])
            reason = ""
        except AdapterRefused as exc:
            functions, reason = (), str(exc)
        out["adapters"].append(
            {
                "kind": kind,
                "address": dev.address,
                "vendor": dev.vendor,
                "device": dev.device,
                "class_code": dev.class_code,
                "driver": dev.driver,
                "iommu_group": dev.iommu_group,
                "assignable": not reason,
                "reason": reason,
                "functions": list(functions),
                "used_by": users.get(dev.address, []),
            }
        )
    return out
