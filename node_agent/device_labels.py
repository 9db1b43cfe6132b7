"""Labels the node reports about itself (``InfoMessage.device_labels``).

Three sources, later ones winning for the same key:

    inventory   ``arch`` (x86_64 → amd64, aarch64 → arm64), ``gpu=present`` when the PCI
                inventory holds a GPU, ``kvm=present`` when /dev/kvm exists
    bundle      ``labels`` of the onboarding bundle's controller.json (e.g. ``site``,
                written by ``outpost-controller bundle --label site=shop-12``)
    file        ``device_labels_file`` of the agent settings: a YAML/JSON mapping a local
                installer or tool writes (re-read every report)

Keys and values must fit :data:`protocol.downloads.DeviceLabels` (a bad one is logged and
left out, never sent).  The controller keeps them apart from the operator's labels; a
selector names them as ``device/<key>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from protocol.downloads import MAX_DEVICE_LABELS, DeviceLabelKey, DeviceLabelValue
from protocol.inventory import NodeInventory

__all__ = ["device_labels", "inventory_labels"]

log = logging.getLogger(__name__)
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_KEY: TypeAdapter[str] = TypeAdapter(DeviceLabelKey)
_VALUE: TypeAdapter[str] = TypeAdapter(DeviceLabelValue)


def inventory_labels(inventory: NodeInventory) -> dict[str, str]:
    labels = {}
    if inventory.machine:
        labels["arch"] = _ARCH.get(inventory.machine, inventory.machine.lower())
    if any(d.is_gpu for d in inventory.pci):
        labels["gpu"] = "present"
    if inventory.kvm_device:
        labels["kvm"] = "present"
    return labels


def _checked(raw: Any, source: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        log.warning("device labels from %s: not a mapping; ignored", source)
        return {}
    out = {}
    for key, value in raw.items():
        try:
            out[_KEY.validate_python(str(key))] = _VALUE.validate_python(str(value))
        except ValidationError:
            log.warning("device label %r=%r from %s is not a valid label; left out",
                        key, value, source)  # fmt: skip
    return out


def _file_labels(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        log.warning("device labels file %s unreadable: %s", path, exc)
        return {}
    return _checked(raw, str(path))


def device_labels(
    inventory: NodeInventory, bundle: dict[str, Any], labels_file: Path | None
) -> dict[str, str]:
    """The node's labels about itself (see the module docstring)."""
    labels = inventory_labels(inventory)
    labels.update(_checked(bundle.get("labels"), "the onboarding bundle"))
    labels.update(_file_labels(labels_file))
    if len(labels) > MAX_DEVICE_LABELS:
        log.warning("more than %d device labels; the first are sent", MAX_DEVICE_LABELS)
    return dict(sorted(labels.items())[:MAX_DEVICE_LABELS])
