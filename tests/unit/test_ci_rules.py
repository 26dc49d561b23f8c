"""The CI rule: under CI=true a skipped test fails the run; elsewhere it stays a skip."""

from __future__ import annotations

import pytest

SKIPPING_TEST = """
import pytest

def test_passes():
    pass

def test_needs_a_server():
    pytest.skip("no server here")
"""


@pytest.mark.parametrize(("ci", "expected"), [("true", pytest.ExitCode.TESTS_FAILED), ("", pytest.ExitCode.OK)])
def test_skips_fail_only_under_ci(pytester, monkeypatch, ci, expected):
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(SKIPPING_TEST)
    result = pytester.runpytest_subprocess("-p", "tests.ci_rules", "-p", "no:cacheprovider")
    assert result.ret == expected
    result.assert_outcomes(passed=1, skipped=1)
    if ci:
        result.stdout.fnmatch_lines(["*CI=true: 1 skipped test(s) count as failures*test_needs_a_server*"])
