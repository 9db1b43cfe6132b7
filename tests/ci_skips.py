"""Under ``CI=true`` a skipped test fails the run, with the skip's reason.

A test that skips on CI means a tool or daemon is missing there: a broken set-up, not a
pass.  This plugin turns every skip (``pytest.skip``, ``skipif``, ``importorskip``, a skip
in a fixture or at collection) into a failure when ``CI`` is ``true``; an expected
failure (``xfail``) is left alone.  Loaded by ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

__all__ = ["ci_forbids_skips"]


def ci_forbids_skips() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, which is a failure: {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if ci_forbids_skips() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if ci_forbids_skips() and report.skipped:
        _fail(report)
