"""Bulk enrolment (manufacturing): a manifest of N identities (serial + device certificate,
base64 DER) imported through ``POST /api/v1/nodes/import`` on the production server, all in
one transaction; then one imported node attests and gets its config.

    .venv/bin/python -m benchmarks.bulk_enrolment [--nodes 100000] [--backend both]

Backends: ``sqlite`` (the embedded default, HTTPS to the controller) and ``postgres``
(PostgreSQL, the controller behind HAProxy terminating TLS). The floor, measured in the
same run: the checks no import can skip done alone in this process — parse each DER
certificate, verify its self-signature, check its dates — beside the import's wall time.
Identities come from the simulator's cache (``benchmarks.simulator``; made once).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestation import pki
from benchmarks.rig import bench_rig
from benchmarks.simulator.fleet import manifest_csv
from benchmarks.simulator.identities import SimIdentity
from benchmarks.simulator.runner import load_identities
from tests.device_sim import SimDevice
from tests.fixtures.controller_server import running_controller

Api = Callable[..., requests.Response]


def floor_s(identities: list[SimIdentity]) -> float:
    """Seconds to parse, verify and date-check every device certificate, in this process."""
    ders = [i.device.cert.public_bytes(Encoding.DER) for i in identities]
    t0 = time.perf_counter()
    for der in ders:
        cert = x509.load_der_x509_certificate(der)
        pki.verify_self_signed(cert)
        pki.check_validity(cert, what="device certificate")
    return time.perf_counter() - t0


@contextmanager
def controller(backend: str, base: Path) -> Iterator[tuple[Api, str, str]]:
    """(operator API call, device API base URL, root CA path) of a served controller."""
    if backend == "sqlite":
        with running_controller(base) as server:
            yield server.api, server.url, str(server.root_ca)
    else:
        with bench_rig(base, replicas=1) as rig:
            yield rig.cluster.api, rig.cluster.url, str(rig.cluster.root_ca)


def run(backend: str, identities: list[SimIdentity], base: Path) -> dict[str, Any]:
    body = manifest_csv(identities)
    with controller(backend, base) as (api, url, ca):
        api("PATCH", "/trust/policy", json={"tpm_less": "allow"}).raise_for_status()
        t0 = time.perf_counter()
        r = api(
            "POST", "/nodes/import", data=body, headers={"Content-Type": "text/csv"}, timeout=600
        )
        took = time.perf_counter() - t0
        r.raise_for_status()
        out = r.json()
        assert out["created"] == len(identities), out
        first = identities[0]
        node = SimDevice(first.serial, first.device, first.device)
        token = node.attest_over_https(url, ca)
        answer = requests.post(
            f"{url}/api/v1/device/config",
            json=node.signed({"config_hash": ""}),
            headers=token,
            verify=ca,
            timeout=30,
        )
        answer.raise_for_status()
    return {"seconds": took, "bytes": len(body), "config": not answer.json()["unchanged"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=100_000)
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = p.parse_args()
    identities = load_identities(args.nodes, "bulk").identities
    floor = floor_s(identities)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    rows = []
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="outpost-bulk-") as tmp:
            rows.append((backend, run(backend, identities, Path(tmp))))
    print(
        "\n| backend | nodes | manifest MiB | import s | rows/s | floor s (cert checks"
        " alone) | import / floor | first node's config |\n|---|---:|---:|---:|---:|---:|---:|---|"
    )
    for backend, r in rows:
        print(
            f"| {backend} | {args.nodes:,} | {r['bytes'] / 2**20:.1f} | {r['seconds']:.1f} |"
            f" {args.nodes / r['seconds']:,.0f} | {floor:.1f} | {r['seconds'] / floor:.1f}x |"
            f" {'signed config' if r['config'] else 'none'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
