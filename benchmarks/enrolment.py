"""Enrolment + first attestation round trip, on real swtpm and an HTTPS controller (SQLite).

Per node (fresh swtpm; TPM keys, the device cert and the claim are set-up, not timed):

    register     onboard(): the register request and its answer — with the controller
                 checking the EK certificate against its bundle, the EK and AK public
                 areas and making the credential challenge, and the node answering it
                 (TPM2_ActivateCredential) when the code does so
    attest       the first attestation: nonce, TPM quote, quote request, the controller's
                 checks (with the credential answer when the code does so)
    total        register + attest

Shown beside them, timed in process on the same TPM (already inside the two steps above
when the controller calls the library): "ctl enrol" (attestation/enrolment.py at
register) and "activate" (the node's TPM2_ActivateCredential).  Floor measured in the
same run: TPM2_Quote + PCR read alone.  Run on code from before issue 16 (no library:
its swtpms have no EK certificates and enrolment is trust on first use) the same script
times register + attest only.

    .venv/bin/python -m benchmarks.enrolment [--nodes 20] [--before before.json]

"before.json" comes from the old code: copy this file out of the tree (its directory must
not hold a module named like a package) and run it there with PYTHONPATH=<old checkout>
and ``--save before.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from attestation.measurement import QUOTED_PCRS, code_digest
from attestation.tpm import Tpm, parse_tpm_setting
from node_agent.agent import CODE_ROOTS
from node_agent.attest import Attestor
from node_agent.client import ControllerClient, load_bundle
from node_agent.identity import load_or_create_device, onboard
from node_agent.measure import Measurements
from protocol.attest import MeasurementType
from tests.fixtures.attest_node import provision
from tests.fixtures.controller_server import running_controller
from tests.fixtures.swtpm import start_swtpm

try:  # the issue-16 library (absent on the code measured as "before")
    from attestation.ek_cert import EkCaBundle
    from attestation.enrolment import begin_tpm_enrolment
    from lab.swtpm_ek import LocalEkCa
    from node_agent.tpm_enrolment import PendingAnswer, answer_challenge, tpm_registration

    ENROLMENT = True
except ImportError:
    ENROLMENT = False

AGENT_DIGEST = code_digest(CODE_ROOTS)
STEPS = ("register", "attest", "total")
INFO = ("ctl enrol", "activate", "floor: TPM2_Quote")


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def one_node(base: Path, i: int, ctl: Any, bundle: Path, ek_ca: Any) -> dict[str, float]:
    serial = f"enrol-{i:03d}"
    provision(ctl, base, serial=serial)
    swtpm = start_swtpm(base / f"tpm-{i}", ek_ca) if ENROLMENT else start_swtpm(base / f"tpm-{i}")
    state = base / f"node-{i}"
    out: dict[str, float] = dict.fromkeys((*STEPS, *INFO), 0.0)
    try:
        with Tpm(parse_tpm_setting(swtpm.tcti)) as tpm:
            tpm.ensure_keys()
            load_or_create_device(state, serial, tpm)
            client = ControllerClient(load_bundle(bundle)["url"], bundle / "root-ca.pem")
            measurements = Measurements(state / "measurements.json", tpm)
            measurements.measure(MeasurementType.AGENT, AGENT_DIGEST, "outpost-agent code")
            t0 = time.perf_counter()
            identity = onboard(client, state, bundle, serial, {}, tpm)
            out["register"] = _ms(t0)
            pending = [PendingAnswer(state)] if ENROLMENT else []  # old code: no such arg
            attestor = Attestor(client, measurements, tpm, True, *pending)
            t0 = time.perf_counter()
            nonce = attestor.nonce(identity.device)
            request = attestor.quote_request(nonce)
            answer = attestor.submit(identity.device, request)
            out["attest"] = _ms(t0)
            assert answer.result.value == "SUCCESS", answer
            out["total"] = out["register"] + out["attest"]
            if ENROLMENT:  # the library's steps alone, on the same TPM (informative)
                ek_bundle = EkCaBundle.load(Path(swtpm.ek_ca_bundle))
                t0 = time.perf_counter()
                enrolment = begin_tpm_enrolment(tpm_registration(tpm), ek_bundle)
                out["ctl enrol"] = _ms(t0)
                t0 = time.perf_counter()
                answer_challenge(tpm, enrolment.challenge)
                out["activate"] = _ms(t0)
            quote_floor = time.perf_counter()
            tpm.quote(b"\0" * 32, list(QUOTED_PCRS))
            out["floor: TPM2_Quote"] = _ms(quote_floor)
    finally:
        swtpm.stop()
    return out


def run(base: Path, nodes: int) -> dict[str, list[float]]:
    ek_ca = LocalEkCa(base / "ek-ca") if ENROLMENT else None
    if ek_ca is not None:
        ek_ca.ensure_ca()
    results: dict[str, list[float]] = {}
    ek_bundle = ek_ca.bundle_path() if ek_ca is not None else None
    with running_controller(base, **({"ek_ca_bundle": ek_bundle} if ek_bundle else {})) as ctl:
        bundle = provision(ctl, base, serial="enrol-setup")
        for i in range(nodes):
            for step, ms in one_node(base, i, ctl, bundle, ek_ca).items():
                results.setdefault(step, []).append(ms)
    return results


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(results: dict[str, list[float]], before: dict[str, list[float]] | None) -> None:
    label = "EK chain + credential activation" if ENROLMENT else "trust on first use (old code)"
    print(f"\nenrolment + first attestation, {len(results['total'])} nodes, {label}")
    head = f"{'step':<22}{'median ms':>11}{'p95':>9}"
    print(head + (f"{'before':>10}{'ratio':>8}" if before else ""))
    for step in (*STEPS, *INFO):
        values = sorted(results.get(step) or [0.0])
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        line = f"{step:<22}{_median(values):>11.1f}{p95:>9.1f}"
        if before is not None and step in before:
            old = _median(before[step])
            line += f"{old:>10.1f}" + (f"{_median(values) / old:>8.2f}" if old else f"{'-':>8}")
        print(line)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--save", type=Path, help="write the raw timings (JSON) here")
    p.add_argument("--before", type=Path, help="timings saved from the old code: show ratios")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="outpost-bench-enrol-") as tmp:
        results = run(Path(tmp), args.nodes)
    before = json.loads(args.before.read_text()) if args.before else None
    report(results, before)
    if args.save:
        with contextlib.suppress(OSError):
            args.save.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
