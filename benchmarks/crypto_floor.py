"""The crypto floor of a config poll: ECDSA P-256 sign (the node seals its request) and
verify (the controller opens it), per second per core on this machine, measured with
the same ``cryptography`` calls the envelopes use, over a payload the size of an idle
poll's.

    .venv/bin/python -m benchmarks.crypto_floor [--seconds 2] [--polls-per-s X]

"verify + sign" is one verify and one sign back to back (one idle poll's crypto when
node and controller share the cores, as in the scale benchmark); the all-cores figure is
measured with one process per core running at once. With ``--polls-per-s`` the ratio
polls/s ÷ floor is printed too (the scale benchmark prints it from its own run).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.simulator.stats import render_table

__all__ = ["CryptoFloor", "floor_table", "measure_floor"]

PAYLOAD = json.dumps(
    {
        "timestamp": 1764000000.123456,
        "request_id": "0d6f7c8e-3b1a-4a55-9f6e-2c1d0e9b8a77",
        "body": {"config_hash": "ab" * 32, "wait_s": 0.0},
    },
    separators=(",", ":"),
).encode()


def _rate(op: str, seconds: float) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    algo = ec.ECDSA(hashes.SHA256())
    sig = key.sign(PAYLOAD, algo)
    n, end = 0, time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        for _ in range(100):
            if op in ("sign", "pair"):
                key.sign(PAYLOAD, algo)
            if op in ("verify", "pair"):
                pub.verify(sig, PAYLOAD, algo)
        n += 100
    return n / (time.perf_counter() - t0)


@dataclass(frozen=True)
class CryptoFloor:
    cores: int
    sign_per_s: float
    verify_per_s: float
    pair_per_s: float
    """verify + sign, one core."""
    pair_per_s_all: float
    """verify + sign, every core at once (one process each)."""

    def ratio(self, polls_per_s: float) -> float:
        """Polls/s as a fraction of what the crypto alone allows on all cores."""
        return polls_per_s / self.pair_per_s_all if self.pair_per_s_all else float("nan")


def measure_floor(seconds: float = 2.0, cores: int | None = None) -> CryptoFloor:
    cores = cores or os.cpu_count() or 1
    sign, verify, pair = (_rate(op, seconds) for op in ("sign", "verify", "pair"))
    with ProcessPoolExecutor(max_workers=cores) as pool:
        together = sum(pool.map(_rate, ["pair"] * cores, [seconds] * cores))
    return CryptoFloor(cores, sign, verify, pair, together)


def floor_table(floor: CryptoFloor, polls_per_s: float | None = None) -> str:
    rows: list[tuple[object, ...]] = [
        ("ECDSA-P256 sign", f"{floor.sign_per_s:,.0f}", ""),
        ("ECDSA-P256 verify", f"{floor.verify_per_s:,.0f}", ""),
        ("verify + sign (floor)", f"{floor.pair_per_s:,.0f}", f"{floor.pair_per_s_all:,.0f}"),
    ]
    if polls_per_s is not None:
        rows.append(("controller polls/s", "", f"{polls_per_s:,.1f}"))
        rows.append(("ratio polls/s ÷ floor", "", f"{100 * floor.ratio(polls_per_s):.2f} %"))
    return render_table(("operation", "per s, one core", f"per s, {floor.cores} cores"), rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--polls-per-s", type=float, help="a measured poll rate to compare")
    args = p.parse_args()
    print(floor_table(measure_floor(args.seconds), args.polls_per_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
