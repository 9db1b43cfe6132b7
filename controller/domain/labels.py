"""A node's labels as selectors see them: the operator's, and the node's own as ``device/…``.

Operators set labels (``PATCH /nodes``, git ``Node`` documents); a node reports labels
about itself (``InfoMessage.device_labels``: ``arch``, ``gpu``, ``site`` from its bundle, a
local file), kept in ``Node.device_labels``.  Selectors (app selectors, rollout rings,
budgets' groups, site policies) match the merged view, where a device label ``gpu`` is the
key ``device/gpu``: a node can never pose as carrying an operator's label, and a selector
says which labels it trusts the node for.  Operator label keys may not begin ``device/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.errors import field_error
from controller.store.models import Node

__all__ = [
    "DEVICE_PREFIX",
    "effective_labels",
    "merged_labels",
    "refuse_device_keys",
    "selector_matches",
]

DEVICE_PREFIX = "device/"


def effective_labels(node: Node) -> dict[str, Any]:
    """Operator labels plus the node's own under ``device/``."""
    return merged_labels(node.labels, node.device_labels)


def merged_labels(
    labels: Mapping[str, Any] | None, device_labels: Mapping[str, Any] | None
) -> dict[str, Any]:
    """:func:`effective_labels` from the two columns (a query that loads only those)."""
    own = {f"{DEVICE_PREFIX}{k}": v for k, v in (device_labels or {}).items()}
    return {**own, **(labels or {})}


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, Any]) -> bool:
    """Every key of a non-empty ``selector`` has its value in ``labels``."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())  # type: ignore[union-attr]


def refuse_device_keys(labels: Mapping[str, Any] | None) -> None:
    """422 for operator labels in the ``device/`` space (the node's own)."""
    for key in labels or {}:
        if key.startswith(DEVICE_PREFIX):
            raise field_error(
                f"labels.{key}", "keys beginning 'device/' name labels the node reports itself"
            )
