"""Time from the demo's start (set-up excluded) to both demo apps RUNNING.

Runs `scripts/demo.py --exit-when-running` N times: the first with --fresh (a new
controller, a node that onboards and probes KVM), the rest reusing .demo/ (the node is
onboarded and its probe cached; the apps are re-created each time).  Prints a table.

    .venv/bin/python -m benchmarks.time_to_running [--runs 3] [--port 18443]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(fresh: bool, port: int) -> tuple[float, float]:
    cmd = [
        sys.executable,
        str(ROOT / "scripts/demo.py"),
        "--exit-when-running",
        "--port",
        str(port),
    ] + (["--fresh"] if fresh else [])
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    total = time.monotonic() - t0
    m = re.search(r"both apps RUNNING, ([0-9.]+) s", out)
    if not m:
        raise SystemExit(f"demo output had no RUNNING line:\n{out}")
    return float(m.group(1)), total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--port", type=int, default=18443)
    args = p.parse_args()
    rows = [("cold (--fresh)", *one_run(True, args.port))]
    warm = [one_run(False, args.port) for _ in range(max(0, args.runs - 1))]
    rows += [(f"warm #{i + 1}", r, t) for i, (r, t) in enumerate(warm)]
    print(f"{'run':<16}{'to RUNNING (s)':>16}{'whole demo incl. teardown (s)':>32}")
    for name, running, total in rows:
        print(f"{name:<16}{running:>16.1f}{total:>32.1f}")
    if warm:
        print(f"{'warm median':<16}{statistics.median(r for r, _ in warm):>16.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
