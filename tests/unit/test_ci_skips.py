"""Under CI=true a skipped test fails the run and says why it skipped; elsewhere a skip
stays a skip."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

def test_needs_a_tool():
    pytest.skip("virtlogd is not installed")

@pytest.mark.skipif(True, reason="no /dev/kvm")
def test_marked():
    pass

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_passes():
    pass
"""


def test_a_skip_under_ci_is_a_failure_with_its_reason(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(test_skipping=SKIPPING)
    result = pytester.runpytest("-p", "tests.ci_skips", "-rfE")
    assert result.ret != 0
    result.assert_outcomes(passed=1, failed=1, errors=1, xfailed=1)  # a setup skip: an error
    result.stdout.fnmatch_lines(["*skipped under CI=true*virtlogd is not installed*"])
    result.stdout.fnmatch_lines(["*skipped under CI=true*no /dev/kvm*"])


def test_a_skip_at_collection_under_ci_is_a_failure(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(test_gone="import pytest\npytest.importorskip('no_such_module_x')\n")
    result = pytester.runpytest("-p", "tests.ci_skips")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*skipped under CI=true*no_such_module_x*"])


def test_a_skip_outside_ci_stays_a_skip(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_skipping=SKIPPING)
    result = pytester.runpytest("-p", "tests.ci_skips")
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
