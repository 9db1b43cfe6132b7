"""Attestation cost on real components: swtpm, tpm2-pytss, an HTTPS controller (SQLite).

1. One attestation round trip of a warm agent (nonce request, TPM quote of PCRs 0-7
   and 14, quote request with the event log, controller verification, token), and its
   parts: the TPM quote alone and the controller's two requests.
2. A fleet: N nodes, each with its own swtpm (its keys are its own), onboard and
   attest against one controller, --workers at a time; each node does what an agent
   does at first start: TPM keys, measure its code, register, attest, fetch its first
   config.  Starting the swtpm processes and claiming the serials is set-up, not timed.

    .venv/bin/python -m benchmarks.attestation [--n 50] [--nodes 100] [--workers 8]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from attestation.measurement import QUOTED_PCRS
from lab.swtpm_ek import LocalEkCa
from node_agent.agent import Agent
from tests.fixtures.attest_node import make_agent, provision
from tests.fixtures.controller_server import running_controller
from tests.fixtures.swtpm import Swtpm, start_swtpm


def _stats(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return f"{name:<34}{len(ms):>6}{statistics.median(ms):>11.1f}{p95:>10.1f}{max(ms):>10.1f}"


def _ek_ca(base: Path) -> LocalEkCa:
    """The TPM maker of the benchmark's swtpms (the controller trusts its bundle)."""
    ca = LocalEkCa(base / "ek-ca")
    ca.ensure_ca()
    return ca


def round_trip(base: Path, n: int) -> None:
    ek_ca = _ek_ca(base)
    tpm = start_swtpm(base / "tpm", ek_ca)
    try:
        with running_controller(base, ek_ca_bundle=ek_ca.bundle_path()) as ctl:
            bundle = provision(ctl, base)
            agent = make_agent(bundle, base / "state", tpm.tcti)
            agent.start()
            agent.once()
            assert agent.tpm and agent.identity and agent.attestor
            total, quote, requests = [], [], []
            for _ in range(n):
                t0 = time.perf_counter()
                nonce = agent.attestor.nonce(agent.identity.device)
                t1 = time.perf_counter()
                request = agent.attestor.quote_request(nonce)
                t2 = time.perf_counter()
                answer = agent.attestor.submit(agent.identity.device, request)
                t3 = time.perf_counter()
                assert answer.result.value == "SUCCESS", answer
                total.append((t3 - t0) * 1000)
                quote.append((t2 - t1) * 1000)
                requests.append(((t1 - t0) + (t3 - t2)) * 1000)
            tq = []
            for _ in range(n):
                t0 = time.perf_counter()
                agent.tpm.quote(b"\0" * 32, list(QUOTED_PCRS))
                tq.append((time.perf_counter() - t0) * 1000)
            agent.close()
            print(
                f"{'one attestation round trip':<34}{'n':>6}{'median ms':>11}{'p95':>10}{'max':>10}"
            )
            print(_stats("  total (nonce+quote+verify)", total))
            print(_stats("  agent: quote + PCR read", quote))
            print(_stats("  controller: 2 HTTPS requests", requests))
            print(_stats("  TPM2_Quote + PCR read alone", tq))
    finally:
        tpm.stop()


def fleet(base: Path, nodes: int, workers: int) -> None:
    tpms: list[Swtpm] = []
    ek_ca = _ek_ca(base)
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            tpms = list(pool.map(lambda i: start_swtpm(base / f"tpm-{i}", ek_ca), range(nodes)))
        setup_tpm = time.perf_counter() - t0
        with running_controller(base, ek_ca_bundle=ek_ca.bundle_path()) as ctl:
            bundle = None
            for i in range(nodes):
                bundle = provision(ctl, base, serial=f"bench-{i:04d}")
            assert bundle is not None

            def one(i: int) -> tuple[float, float, float]:
                agent: Agent = make_agent(
                    bundle, base / f"node-{i}", tpms[i].tcti, serial=f"bench-{i:04d}"
                )
                t0 = time.perf_counter()
                agent.start()  # TPM keys, code measurement, register
                t1 = time.perf_counter()
                agent.attest()
                t2 = time.perf_counter()
                assert agent.fetch_config() is True
                t3 = time.perf_counter()
                agent.close()
                return (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t0) * 1000

            t0 = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(one, range(nodes)))
            wall = time.perf_counter() - t0
            trust = ctl.api("GET", "/trust/nodes").json()["nodes"]
            attested = sum(t["state"] == "attested" and t["device_key_in_tpm"] for t in trust)
        print(
            f"\n{nodes} nodes, one swtpm each (started in {setup_tpm:.1f} s, not timed),"
            f" {workers} in parallel against one controller"
        )
        print(f"{'per node':<34}{'n':>6}{'median ms':>11}{'p95':>10}{'max':>10}")
        print(_stats("  keys + measure + register", [r[0] for r in results]))
        print(_stats("  attest (first: AK enrolment)", [r[1] for r in results]))
        print(_stats("  start → attested → config", [r[2] for r in results]))
        print(
            f"all {nodes} onboarded, attested and configured in {wall:.1f} s"
            f" ({nodes / wall:.1f} nodes/s); {attested} attested with the key in the TPM"
        )
    finally:
        for tpm in tpms:
            with contextlib.suppress(Exception):
                tpm.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=50, help="round trips to time")
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
        round_trip(Path(tmp) / "rt", args.n)
        fleet(Path(tmp) / "fleet", args.nodes, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
