"""What an app instance is told about itself: its instance metadata and user-data, from its
spec and the interfaces planned for it (pure).

One source for the three ways an app reads it: the NoCloud seed of a VM
(:mod:`node_agent.metadata.seed`), the metadata service on its app networks
(:mod:`node_agent.metadata.server`) and a container's env and files
(:mod:`node_agent.runtime.podman_args`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from attestation.files import atomic_write
from node_agent.runtime.base import NetAttachment
from protocol.app_config import (
    METADATA_ADDRESS,
    InstanceInterface,
    InstanceMetadata,
    InstancePort,
)
from protocol.desired_state import AppSpec

__all__ = ["instance_metadata", "meta_data_json", "user_data_bytes", "write_config_dir"]


def instance_metadata(
    app: AppSpec, node_uuid: str, attachments: Iterable[NetAttachment]
) -> InstanceMetadata:
    """``app``'s metadata on this node (instance id = the app's uuid, hostname = its name)."""
    interfaces = [
        InstanceInterface(network=a.network, ip=a.ip, mac=a.mac, gateway=a.gateway)
        for a in attachments
    ]
    ports = [
        InstancePort(network=n.name, host=p.host, guest=p.guest, proto=p.proto)
        for n in app.networks
        for p in n.ports
    ]
    return InstanceMetadata(
        instance_id=app.uuid,
        local_hostname=app.name,
        hostname=app.name,
        node_uuid=node_uuid,
        kind=app.kind,
        interfaces=interfaces,
        ports=ports,
        metadata_url=f"http://{METADATA_ADDRESS}" if interfaces else "",
    )


def meta_data_json(meta: InstanceMetadata) -> str:
    """The ``meta-data`` document: JSON (so also YAML, as NoCloud reads it), sorted keys."""
    return json.dumps(meta.document(), indent=1, sort_keys=True) + "\n"


def user_data_bytes(user_data: str | None) -> bytes:
    """The ``user-data`` file's bytes (empty when the app has none)."""
    return (user_data or "").encode("utf-8")


def write_config_dir(directory: Path, meta_data: str, user_data: str | None) -> None:
    """A container's ``meta-data.json`` and ``user-data`` (0644: the container's process may
    run as any user). Without user-data the directory is removed."""
    directory = Path(directory)
    if user_data is None:
        shutil.rmtree(directory, ignore_errors=True)
        return
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    atomic_write(directory / "meta-data.json", meta_data.encode(), 0o644)
    atomic_write(directory / "user-data", user_data_bytes(user_data), 0o644)
