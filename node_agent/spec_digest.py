"""The digest of what a workload is made from: the one spec-change detector.

Computed once per app and pass by the reconciler, put in the ``WorkloadSpec``, stored
with the workload by its runtime (podman label ``outpost.spec-sha256``, the domain's
Outpost metadata) and compared in :func:`node_agent.runtime.base.same_spec`.  It covers
the app's spec (image, resources, env, command, adapters, disks, networks and ports) and
the interfaces planned for it on this node; it leaves out what does not make a
workload (the name, desired state, restart/purge counters, start delay, health probe, and
where the image is downloaded from: a site's datastore moving changes no workload), so
those never recreate it.  Workloads made by agents whose digest still held the image URL
are recognised by :func:`url_spec_digest`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from node_agent.network import WorkloadNetworks
from protocol.desired_state import AppSpec

__all__ = ["LEGACY_SPEC_FILE", "legacy_spec_digest", "spec_digest", "url_spec_digest"]

LEGACY_SPEC_FILE = "spec.sha256"
"""Where agents before the stored digest kept it (``<apps>/<uuid>/spec.sha256``)."""

_NOT_SPEC = {"restart_counter", "purge_counter", "desired", "start_delay_s", "name", "health"}
_NEW_DEFAULTS: dict[str, object] = {
    "disks": [],
    "vtpm": False,
    "user_data": None,
    "user_data_secret": False,
}
"""Fields added later: left out of the digest at their defaults, so a workload made
before they existed is not taken for changed; a field added in future goes here too."""


def _fields(app: AppSpec, with_url: bool = True) -> dict[str, Any]:
    fields = app.model_dump(mode="json", exclude=_NOT_SPEC)
    if not with_url:
        fields["image"].pop("url", None)
    for name, default in _NEW_DEFAULTS.items():
        if fields.get(name, default) == default:  # the wire may leave a default out
            fields.pop(name, None)
    for adapter in fields.get("adapters", []):
        if adapter.get("optional") is False:
            adapter.pop("optional")
    return fields


def legacy_spec_digest(app: AppSpec) -> str:
    """The digest agents before :func:`spec_digest` kept in ``spec.sha256`` (no interfaces)."""
    return hashlib.sha256(json.dumps(_fields(app), sort_keys=True).encode()).hexdigest()


def spec_digest(app: AppSpec, nets: WorkloadNetworks | None = None) -> str:
    """sha256 (hex) of the canonical JSON of ``app``'s workload fields and ``nets``."""
    return _digest(_fields(app, with_url=False), nets)


def url_spec_digest(app: AppSpec, nets: WorkloadNetworks | None = None) -> str:
    """The digest as agents stored it before the image URL left it (still recognised)."""
    return _digest(_fields(app), nets)


def _digest(fields: dict[str, Any], nets: WorkloadNetworks | None) -> str:
    if nets is not None and (nets.attachments or nets.netns_path):
        fields["_interfaces"] = {
            "attachments": [dataclasses.asdict(a) for a in nets.attachments],
            "netns_path": nets.netns_path,
        }
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()
