"""GitOps and staged rollouts on real agents: time from a git commit (+ sync) to the app
RUNNING on a qa node, and a full 3-ring rollout with the health gates shortened (soak
3 s per ring; ring two behind an approval given after a 3 s hold).

Each run is one pass of ``tests/integration/test_gitops_and_rollouts_e2e.py`` (one
controller process with its rollout engine, three agent processes on podman), which
prints its measurements; this script collects them and prints a table.

    .venv/bin/python -m benchmarks.gitops_rollout [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/integration/test_gitops_and_rollouts_e2e.py"
ROWS = (
    ("git_commit_to_running_s", "git commit + sync → RUNNING on the qa node"),
    ("ring_one_s", "rollout start → ring 1 passed (soak 3 s)"),
    ("rings_two_three_s", "approval → rings 2 and 3 passed (soak 3 s each)"),
    ("three_ring_rollout_s", "whole 3-ring rollout incl. the 3 s approval hold"),
    ("broken_to_rolled_back_s", "broken version → rolled back (deadline 20 s)"),
)


def one_run() -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "-q", "-x", "-s", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("GITOPS-MEASURED "):
            return json.loads(line.removeprefix("GITOPS-MEASURED "))  # type: ignore[no-any-return]
    raise SystemExit(f"the run failed or printed no measurements:\n{out.stdout[-3000:]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    width = max(len(label) for _, label in ROWS)
    head = "".join(f"{f'run {i + 1} (s)':>12}" for i in range(len(runs)))
    print(f"{'measurement':<{width}}{head}{'median (s)':>12}")
    for key, label in ROWS:
        values = [r[key] for r in runs]
        cells = "".join(f"{v:>12.2f}" for v in values)
        print(f"{label:<{width}}{cells}{statistics.median(values):>12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
