"""A synthetic fleet in the controller's database, for UI benchmarks and screenshots.

Nodes with inventories (disks, PCI devices with IOMMU groups, GPUs, USB), attestation
states, labels, app instances in various lifecycle states (one downloading, with
progress), metric samples, log batches, events and audit entries — written straight
into the tables the device API fills, so pages can be measured at fleet scale.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import uuid as uuidlib
from dataclasses import dataclass

from controller.store.database import Database
from controller.store.models import (
    App,
    Assignment,
    AuditEvent,
    Event,
    Image,
    LogBatch,
    MetricSample,
    Node,
    NodeTrust,
    utcnow,
)

__all__ = ["Fleet", "seed_fleet"]

APPS = (("web", "container", "busybox"), ("cache", "container", "busybox"), ("infer", "vm", "vm"))


PORTS = {
    "firewall": {"enforced": True, "table": "inet outpost", "generation": 3, "apply_ms": 4.2},
    "open_ports": [
        {"port": 8080, "proto": "tcp", "purpose": "app web", "target": "10.1.0.2:80"},
    ],
    "usb": {"policy": "deny", "authorized_default_off": True, "buses": 2},
    "debug": {"ssh": False, "console": False},
}


@dataclass(frozen=True)
class Fleet:
    serials: list[str]
    detailed: str
    """The node with a full day of metrics and recent logs."""


def _inventory(rng: random.Random, serial: str) -> dict[str, object]:
    return {
        "hostname": serial,
        "cpus": rng.choice((4, 8, 16)),
        "memory_kib": rng.choice((8, 16, 32)) * 1024 * 1024,
        "kernel": "6.1.0-27-amd64",
        "machine": "x86_64",
        "kvm_device": True,
        "tpm": "tpm2",
        "disks": [{"name": "nvme0n1", "size_bytes": 512 * 1024**3, "model": "NVMe SSD"}],
        "pci": [
            {"address": "0000:00:02.0", "id": "8086:46a6", "class": "VGA", "iommu_group": 0},
            {"address": "0000:01:00.0", "id": "8086:15f3", "class": "Ethernet", "iommu_group": 7},
        ],
        "gpus": [{"address": "0000:00:02.0", "vendor": "Intel", "model": "Iris Xe"}],
        "usb": [{"bus_id": "1-2", "vendor_product": "046d:c52b", "product": "Receiver"}],
    }


def seed_fleet(
    db: Database,
    nodes: int = 1000,
    prefix: str = "node",
    samples: int = 1440,
    seed: int = 7,
    now: dt.datetime | None = None,
    audit: int = 5000,
) -> Fleet:
    """Add ``nodes`` registered nodes (and apps, events, audit) to ``db``."""
    rng = random.Random(seed)
    now = now or utcnow()
    serials = [f"{prefix}-{i:04d}" for i in range(nodes)]
    with db.transaction() as s:
        images = {
            "busybox": Image(
                name=f"{prefix}-busybox", sha256="a" * 64, size=1044480, format="oci-archive"
            ),
            "vm": Image(
                name=f"{prefix}-vm", sha256="b" * 64, size=15 * 1024**2, format="kernel-bundle"
            ),
        }
        s.add_all(images.values())
        s.flush()
        apps = []
        for name, kind, image in APPS:
            app = App(
                uuid=str(uuidlib.uuid4()),
                name=f"{prefix}-{name}",
                kind=kind,
                image_id=images[image].id,
                spec={"resources": {"vcpus": 1, "memory_mib": 128, "disk_mib": 0}},
                label_selector={"site": "lab"} if name == "cache" else None,
            )
            s.add(app)
            apps.append(app)
        s.flush()
        for i, serial in enumerate(serials):
            roll = rng.random()
            node = Node(
                serial=serial,
                uuid=str(uuidlib.uuid4()),
                state="registered",
                registered_at=now - dt.timedelta(days=30),
                last_seen=now - dt.timedelta(seconds=5 if roll < 0.93 else 7200),
                inventory=_inventory(rng, serial),
                labels={"site": rng.choice(("lab", "store", "plant")), "ring": str(i % 3)},
                config_generation=3,
            )
            s.add(node)
            s.flush()
            trust = "attested" if roll < 0.9 else "unattested" if roll < 0.97 else "failed"
            s.add(
                NodeTrust(
                    node_id=node.id,
                    state=trust,
                    result="SUCCESS" if trust == "attested" else "POLICY_MISMATCH",
                    reason="" if trust != "failed" else "agent code 9f3c… is not in the baseline",
                    tpm="tpm2",
                    attested_at=now - dt.timedelta(minutes=5) if trust == "attested" else None,
                )
            )
            statuses = []
            for app in apps[: 2 if i % 4 else 3]:
                s.add(Assignment(node_id=node.id, app_id=app.id, explicit=app.name.endswith("web")))
                state = "RUNNING" if rng.random() < 0.97 else "ERROR"
                status: dict[str, object] = {"uuid": app.uuid, "name": app.name, "state": state}
                if state == "ERROR":
                    status["error"] = "container exited with status 137 (out of memory)"
                if app.kind == "vm" and i == 0:
                    status = status | {
                        "state": "DOWNLOADING",
                        "progress_pct": 60,
                        "progress_bytes": 9 * 1024**2,
                        "progress_total_bytes": 15 * 1024**2,
                        "progress_rate_bps": 2.5 * 1024**2,
                    }
                statuses.append(status)
            node.info = {
                "agent_version": "0.1.0",
                "config_generation": 3,
                "hypervisor": "kvm",
                "apps": statuses,
            }
            s.add(
                Event(
                    node_id=node.id,
                    at=now - dt.timedelta(minutes=rng.randint(1, 600)),
                    kind="registered",
                    message="",
                )
            )
        for i in range(audit):
            s.add(
                AuditEvent(
                    at=now - dt.timedelta(seconds=i),
                    actor="user:alice",
                    action=rng.choice(("node.claim", "app.assign", "node.restart")),
                    target=rng.choice(serials),
                    detail={"app": f"{prefix}-web"},
                )
            )
        detailed = s.query(Node).filter(Node.serial == serials[0]).one()
        detailed.info = detailed.info | {"ports": PORTS}
        _metrics(s, detailed.id, samples, now, rng)
        _logs(s, detailed.id, apps[0].uuid, now)
    return Fleet(serials, serials[0])


def _metrics(s, node_id: int, samples: int, now: dt.datetime, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
    t0 = now.replace(tzinfo=dt.UTC).timestamp() - 60 * samples
    cpu = rx = tx = 0.0
    for k in range(samples):
        load = 0.8 + 0.6 * abs(((k % 240) - 120) / 120) + rng.random() * 0.3
        cpu += 60 * load
        rx += 60 * (40_000 + rng.random() * 30_000)
        tx += 60 * (8_000 + rng.random() * 6_000)
        s.add(
            MetricSample(
                node_id=node_id,
                at=now - dt.timedelta(minutes=samples - k),
                data={
                    "at": t0 + 60 * k,
                    "node": {
                        "cpu_seconds_total": cpu,
                        "memory_used_bytes": int((2.5 + load) * 1024**3),
                        "memory_total_bytes": 8 * 1024**3,
                        "disk_used_bytes": 40 * 1024**3,
                        "disk_total_bytes": 512 * 1024**3,
                        "net_rx_bytes_total": int(rx),
                        "net_tx_bytes_total": int(tx),
                        "uptime_s": 60.0 * k,
                    },
                    "apps": [],
                },
            )
        )


def _logs(s, node_id: int, app_uuid: str, now: dt.datetime) -> None:  # type: ignore[no-untyped-def]
    ts = now.replace(tzinfo=dt.UTC).timestamp()
    for source, lines in (
        (
            "agent",
            [
                "config generation 3 verified and checkpointed",
                "reconcile: 3 apps, 0 actions",
                "info sent (3 apps)",
            ],
        ),
        (f"app:{app_uuid}", ["listening on :8080", "GET /healthz 200", "GET / 200"]),
    ):
        rows = [{"ts": ts - 30 + i, "level": "INFO", "msg": m} for i, m in enumerate(lines)]
        s.add(
            LogBatch(
                node_id=node_id,
                source=source,
                lines=len(rows),
                data_gz=gzip.compress("\n".join(json.dumps(r) for r in rows).encode()),
            )
        )
    node = s.get(Node, node_id)
    node.log_seq = {"agent": 0, f"app:{app_uuid}": 0}
