"""Figures the tests print (timings, scan results, request counts): pytest captures a
passing test's output, so this plugin repeats what integration tests printed in the
terminal summary, where a CI log keeps it. Nothing is asserted on them (docs/benchmarks.md
records measured runs)."""

from __future__ import annotations

from typing import Any

import pytest

MAX_LINES = 6
MAX_CHARS = 240
NOISE = (
    "onboarding bundle ",
    "onboarding certificate ",
    "admin API token ",
    "controller initialised",
)
"""What the controller's own commands print when a test calls them."""
_printed: list[tuple[str, list[str]]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" or not report.passed or "/integration/" not in report.nodeid:
        return
    text = "".join(body for name, body in report.sections if name == "Captured stdout call")
    lines = [
        line.strip()[:MAX_CHARS]
        for line in text.splitlines()
        if line.strip()
        and not line.startswith(NOISE)
        and "password" not in line.lower()  # never a secret in a CI log
    ]
    if lines:
        _printed.append((report.nodeid, lines[-MAX_LINES:]))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _printed:
        return
    terminalreporter.section("figures the integration tests printed")
    for nodeid, lines in _printed:
        terminalreporter.write_line(nodeid)
        for line in lines:
            terminalreporter.write_line(f"    {line}")
