"""Device API cost per request, in process (Flask test client, SQLite in a temp dir).

Measures the controller side of what every node does on every tick: an 'unchanged'
config answer, a signed config answer (ECDSA sign), and an info report — each including
the envelope verification and the replay check.  Prints a table.

    .venv/bin/python -m benchmarks.device_api [--n 300]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
from pathlib import Path

from controller.app import create_app
from controller.cli import _settings
from controller.cli import main as controller_main
from protocol.desired_state import DesiredState
from tests.device_sim import SimDevice


def timed(n: int, fn) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=300)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, tok = Path(tmp) / "c", Path(tmp) / "tok"
        controller_main(["--data-dir", str(data), "init", "--token-file", str(tok)])
        controller_main(["--data-dir", str(data), "bundle", "--out", f"{tmp}/b"])
        client = create_app(_settings(data)).test_client()
        headers = {"Authorization": f"Bearer {tok.read_text().strip()}"}
        client.post("/api/v1/nodes/claim", json={"serial": "bench"}, headers=headers)
        dev = SimDevice.from_bundle(Path(tmp) / "b", "bench")
        assert client.post("/api/v1/device/register", json=dev.register_body()).status_code == 201
        tok_hdr = dev.attest_with(client)  # config needs an integrity token
        first = client.post(
            "/api/v1/device/config", json=dev.signed({"config_hash": ""}), headers=tok_hdr
        ).json
        doc_hash = _hash_of(first["config"])
        info = {"agent_version": "b", "config_generation": 1, "apps": []}
        cases = {
            "config (unchanged)": lambda: client.post(
                "/api/v1/device/config", json=dev.signed({"config_hash": doc_hash}), headers=tok_hdr
            ),
            "config (signed doc)": lambda: client.post(
                "/api/v1/device/config", json=dev.signed({"config_hash": ""}), headers=tok_hdr
            ),
            "info": lambda: client.post("/api/v1/device/info", json=dev.signed(info)),
        }
        print(f"{'request':<22}{'n':>6}{'median ms':>12}{'p95 ms':>10}{'req/s':>9}")
        for name, fn in cases.items():
            ms = sorted(timed(args.n, fn))
            med = statistics.median(ms)
            print(
                f"{name:<22}{args.n:>6}{med:>12.2f}{ms[int(0.95 * len(ms))]:>10.2f}"
                f"{1000 / med:>9.0f}"
            )
    return 0


def _hash_of(wire: dict) -> str:  # type: ignore[type-arg]
    """The content hash of the config inside a config envelope (what the node would send)."""
    body = json.loads(base64.b64decode(wire["payload"]))["body"]
    return DesiredState.model_validate(body).content_hash()


if __name__ == "__main__":
    raise SystemExit(main())
