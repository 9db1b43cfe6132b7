"""schemathesis against a real controller process: every check (server errors, status codes,
content types, response schemas, negative data refused, positive data accepted, missing
auth, unsupported methods, use after free, resource availability), stateful links on,
seeded objects; then the database holds only what the API allows.

Bounded by time (``OUTPOST_FUZZ_SECONDS``, default 100 s; ``OUTPOST_FUZZ_SEED`` picks
other cases) and asserted to send at least 3,000 requests (two schemathesis processes
with different seeds: generating cases is CPU-bound).  The HAR report of every request is
kept in the test's directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.cli import _settings
from controller.consistency import check_database
from controller.gitops.repo import PROTOCOLS_ENV
from controller.store.database import Database
from tests.fixtures.api_fuzz import run_schemathesis, seed_controller
from tests.fixtures.controller_server import running_controller

pytestmark = pytest.mark.integration

FUZZ_SECONDS = int(os.environ.get("OUTPOST_FUZZ_SECONDS", "100"))
FUZZ_SEED = int(os.environ.get("OUTPOST_FUZZ_SEED", "17"))  # another seed: other cases
MIN_REQUESTS = 3000  # ~6,000 in 100 s on a quiet 2-core machine


SERVER_TROUBLE = ("ERROR", "Traceback", "transaction", "deadline", "blocked")


def _server_warnings(log: Path, limit: int = 8000) -> str:
    """The controller's own warnings (slow transactions, a blocked event loop, requests past
    their deadline, tracebacks): what to read when a request timed out or failed."""
    if not log.exists():
        return "(no controller log)"
    keep, lines = [], log.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if any(
            w in line for w in ("ERROR", "Traceback", "slow transaction", "deadline", "blocked")
        ):
            keep.extend(lines[i : i + 60])
    return "\n".join(keep)[-limit:] or "(no warnings)"


def test_fuzzing_the_operator_api_finds_nothing_and_leaves_a_consistent_database(
    tmp_path: Path,
) -> None:
    # git may fetch only local repositories: a fuzzed https:// or ssh:// source never
    # leaves the machine (no DNS query, no connection)
    # and gevent's monitor reports a blocked event loop into the log shown on failure
    env = {**os.environ, PROTOCOLS_ENV: "file", "GEVENT_MONITOR_THREAD_ENABLE": "true"}
    with running_controller(tmp_path, env=env) as server:
        seed_controller(server)
        run = run_schemathesis(server, tmp_path / "fuzz", max_time_s=FUZZ_SECONDS, seed=FUZZ_SEED)
        with Database(_settings(server.data_dir).database_url).transaction() as s:
            problems = check_database(s)
    print(
        f"\nfuzz: {run.requests} requests in {run.seconds:.0f} s"
        f" ({run.requests / max(run.seconds, 1):.0f}/s), exit {run.exit_code},"
        f" 5xx {len(run.server_errors)}, invalid JSON {len(run.invalid_json)},"
        f" stored problems {len(problems)}"
    )
    server_log = _server_warnings(tmp_path / "controller.log")
    assert run.server_errors == [], (run.server_errors[:20], server_log)
    assert run.invalid_json == [], run.invalid_json[:20]
    assert run.exit_code == 0, run.output[-12000:] + "\n\ncontroller log:\n" + server_log
    assert [str(p) for p in problems] == []
    assert run.requests >= MIN_REQUESTS, f"only {run.requests} requests in {run.seconds:.0f} s"
