"""How long the testers' lab takes: ``outpost-lab up --nodes N`` (process nodes) until every
node is attested, ``deploy`` until the busybox app is RUNNING on all of them, ``down``.

Each run uses a fresh lab dir and drives the real command line (controller, N agents each
in its own namespace with its own swtpm, podman).  The ``up`` time is split with the
timestamps ``up`` prints: controller serving, last agent started, all attested.

    .venv/bin/python -m benchmarks.lab_up [--nodes 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAMP = re.compile(r"^\[lab\s+([\d.]+)s\] (.*)$")


def _lab(*args: str) -> tuple[float, str]:
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=1800
    )
    took = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"outpost-lab {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return took, out.stdout


def _stamp(output: str, predicate: str, last: bool = False) -> float:
    times = [
        float(m.group(1))
        for line in output.splitlines()
        if (m := STAMP.match(line)) and predicate in m.group(2)
    ]
    if not times:
        return float("nan")
    return times[-1] if last else times[0]


def one_run(nodes: int) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="outpost-lab-bench-", dir="/tmp"))
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    try:
        up_s, up_out = _lab("up", "--nodes", str(nodes), "--dir", str(directory),
                            "--controller-port", str(port))  # fmt: skip
        deploy_s, deploy_out = _lab("deploy", "--dir", str(directory), "--name", "hello")
        down_s, _ = _lab("down", "--dir", str(directory))
    finally:
        subprocess.run([sys.executable, "-m", "lab.cli", "down", "--dir", str(directory)],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "controller serving": _stamp(up_out, "controller up at"),
        "last agent started": _stamp(up_out, "agent started", last=True),
        "first node attested": _stamp(up_out, ": attested"),
        "all attested (up returns)": up_s,
        "deploy: first RUNNING": _stamp(deploy_out, "hello RUNNING"),
        "deploy: RUNNING on all": deploy_s,
        "up + deploy": up_s + deploy_s,
        "down": down_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        result = one_run(args.nodes)
        runs.append(result)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()), flush=True)
    print(f"\n{args.nodes} process nodes, {args.runs} run(s); seconds")
    print(f"{'step':<28}{'median':>8}{'min':>8}{'max':>8}")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"{key:<28}{statistics.median(values):>8.1f}{min(values):>8.1f}{max(values):>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
