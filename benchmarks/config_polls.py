"""'Unchanged' config polls against a real HTTPS controller process, from N simulated nodes
that sign real envelopes (and attested first, as TPM-less nodes).

    .venv/bin/python -m benchmarks.config_polls [--nodes 50] [--workers 8] [--seconds 20]

Prints polls/s, p50/p99 latency, bytes per idle poll (HTTP bodies + headers; TLS framing
and handshakes not counted) and the projected nodes one controller process serves at
EVE's 60 s poll.  The simulated nodes run on the same 2 cores as the controller, so the
client's signing and TLS work is part of what is measured.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from benchmarks.device_api import _hash_of
from controller.cli import main as controller_main
from tests.device_sim import SimDevice
from tests.fixtures.controller_server import free_port, start_controller


def _request_bytes(r: requests.Response) -> int:
    req = r.request
    head = len(f"{req.method} {req.path_url} HTTP/1.1\r\n") + sum(
        len(k) + len(v) + 4 for k, v in req.headers.items()
    )
    return head + len(req.body or b"")


def _response_bytes(r: requests.Response) -> int:
    return 17 + sum(len(k) + len(v) + 4 for k, v in r.headers.items()) + len(r.content)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, port = Path(tmp) / "c", free_port()
        url = f"https://127.0.0.1:{port}"
        controller_main(
            ["--data-dir", str(data), "init", "--public-url", url, "--token-file", f"{tmp}/tok"]
        )
        controller_main(["--data-dir", str(data), "bundle", "--out", f"{tmp}/b"])
        proc = start_controller(data, port, Path(tmp) / "c.log")
        ca = str(data / "pki" / "root-ca.pem")
        auth = {"Authorization": f"Bearer {Path(tmp, 'tok').read_text().strip()}"}
        try:
            nodes = []
            for i in range(args.nodes):
                dev = SimDevice.from_bundle(Path(tmp) / "b", f"bench-{i}")
                requests.post(
                    f"{url}/api/v1/nodes/claim",
                    json={"serial": dev.serial},
                    headers=auth,
                    verify=ca,
                    timeout=30,
                ).raise_for_status()
                requests.post(
                    f"{url}/api/v1/device/register", json=dev.register_body(), verify=ca, timeout=30
                ).raise_for_status()
                token = dev.attest_over_https(url, ca)
                first = requests.post(
                    f"{url}/api/v1/device/config",
                    headers=token,
                    verify=ca,
                    json=dev.signed({"config_hash": ""}),
                    timeout=30,
                ).json()
                nodes.append((dev, token, _hash_of(first["config"])))
            latencies: list[float] = []
            sizes: list[tuple[int, int]] = []
            lock = threading.Lock()
            stop = time.monotonic() + args.seconds

            def worker(mine: list) -> None:  # type: ignore[type-arg]
                session = requests.Session()
                i = 0
                while time.monotonic() < stop:
                    dev, token, have = mine[i % len(mine)]
                    i += 1
                    t0 = time.perf_counter()
                    r = session.post(
                        f"{url}/api/v1/device/config",
                        headers=token,
                        verify=ca,
                        json=dev.signed({"config_hash": have}),
                        timeout=30,
                    )
                    ms = (time.perf_counter() - t0) * 1000
                    assert r.json()["unchanged"] is True, r.text
                    with lock:
                        latencies.append(ms)
                        if len(sizes) < 50:
                            sizes.append((_request_bytes(r), _response_bytes(r)))

            t0 = time.monotonic()
            threads = [
                threading.Thread(target=worker, args=(nodes[w :: args.workers],))
                for w in range(min(args.workers, len(nodes)))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - t0
        finally:
            proc.terminate()
            proc.wait(10)
    latencies.sort()
    rate = len(latencies) / elapsed
    req_b = statistics.median(s[0] for s in sizes)
    resp_b = statistics.median(s[1] for s in sizes)
    print(
        f"{'nodes':>6}{'workers':>8}{'polls':>8}{'polls/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'req B':>7}{'resp B':>7}{'nodes @60s':>11}"
    )
    print(
        f"{args.nodes:>6}{args.workers:>8}{len(latencies):>8}{rate:>9.1f}"
        f"{latencies[len(latencies) // 2]:>8.1f}{latencies[int(len(latencies) * 0.99)]:>8.1f}"
        f"{req_b:>7.0f}{resp_b:>7.0f}{rate * 60:>11.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
