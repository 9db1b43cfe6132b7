"""The lab's private podman store, shared by its process nodes.

Like the test harness's engine: ``--root/--runroot/--tmpdir`` inside the lab dir (overlay
when it initialises there, else vfs) and a ``CONTAINERS_CONF`` with runtime runc and
explicit ulimits (runc cannot set rlimits otherwise; crun fails on this host's hybrid
cgroups).  Every agent labels its containers ``outpost.node=<node uuid>``, so one store
serves many nodes and ``down`` removes exactly the lab nodes' containers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Collection
from pathlib import Path

from lab.errors import LabError
from lab.state import PodmanRecord

__all__ = ["LABEL_NODE", "containers_of", "create_store", "release_store", "remove_containers"]

PODMAN = shutil.which("podman") or "podman"
LABEL_NODE = "outpost.node"
ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")
CONTAINERS_CONF = """\
[containers]
default_ulimits = [{ulimits}]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def _podman(store: PodmanRecord, *args: str, check: bool = True) -> str:
    try:
        out = subprocess.run(
            [PODMAN, *store.global_args, *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=180,
            env={**os.environ, **store.env},
        )
    except FileNotFoundError as exc:
        raise LabError("podman is not installed (Debian package podman)") from exc
    if check and out.returncode != 0:
        raise LabError(f"podman {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def create_store(directory: Path) -> PodmanRecord:
    """Make the store (overlay if it works in ``directory``, else vfs)."""
    directory.mkdir(parents=True, exist_ok=True)
    ulimits = ", ".join(f'"{u}"' for u in ULIMITS)
    (directory / "containers.conf").write_text(CONTAINERS_CONF.format(ulimits=ulimits))
    errors = []
    for driver in ("overlay", "vfs"):
        store = PodmanRecord(directory=directory, storage_driver=driver)
        try:
            _podman(store, "info", "--format", "{{.Store.GraphDriverName}}")
            return store
        except LabError as exc:
            errors.append(f"{driver}: {exc}")
            shutil.rmtree(directory / "root", ignore_errors=True)
    raise LabError(f"no podman storage driver works in {directory}: {'; '.join(errors)}")


def containers_of(store: PodmanRecord, node_uuids: Collection[str] | None = None) -> list[str]:
    """Ids of the store's containers labelled with one of ``node_uuids`` (None: with any
    node label: the store is the lab's own, so every Outpost container in it is a lab
    node's, also one of a node whose uuid the lab never learnt)."""
    if node_uuids is not None and not node_uuids:
        return []
    if not (store.directory / "root").exists():
        return []
    out = _podman(store, "ps", "--all", "--no-trunc", "--format", "json").strip()
    labelled = [(c["Id"], (c.get("Labels") or {}).get(LABEL_NODE)) for c in json.loads(out or "[]")]
    return [cid for cid, node in labelled if node and (node_uuids is None or node in node_uuids)]


def remove_containers(store: PodmanRecord, node_uuids: Collection[str] | None = None) -> int:
    """Force-remove the lab nodes' containers (see :func:`containers_of`); how many."""
    ids = containers_of(store, node_uuids)
    if ids:
        _podman(store, "rm", "--force", "--volumes", "--time", "0", *ids)
    return len(ids)


def release_store(store: PodmanRecord) -> None:
    """Unmount what the overlay driver still has mounted in the store (deepest first)."""
    prefix = str(store.directory.resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo if line.split()[4].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, timeout=30, check=False)
