"""How fast the operator CLI starts: `outpost --help`, and `outpost -o json get nodes`
against a real controller process (10 nodes claimed), beside the floor measured in the same
run: a bare `python -c pass` and `python -c "import requests"` (what any HTTP CLI pays).

    .venv/bin/python -m benchmarks.cli_startup [--runs 15]

Prints the median and best wall time of each command (fresh process each run) and the
ratio to the floor.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fixtures.controller_server import running_controller

OUTPOST = str(Path(sys.executable).with_name("outpost"))


def _time(cmd: list[str], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_controller(Path(tmp)) as ctl:
        for i in range(10):
            ctl.api("POST", "/nodes/claim", json={"serial": f"bench-{i:02d}"})
        login = ["--url", ctl.url, "--token", ctl.token, "--ca", str(ctl.root_ca)]
        rows = [
            ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
            ('python -c "import requests"', [sys.executable, "-c", "import requests"]),
            ("outpost --help", [OUTPOST, "--help"]),
            ("outpost -o json get nodes", [OUTPOST, *login, "-o", "json", "get", "nodes"]),
        ]
        results = [(name, *_time(cmd, args.runs)) for name, cmd in rows]
    floor = results[0][1]
    print(f"{'command':32} {'median s':>9} {'best s':>8} {'x floor':>8}")
    for name, median, best in results:
        print(f"{name:32} {median:9.3f} {best:8.3f} {median / floor:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
