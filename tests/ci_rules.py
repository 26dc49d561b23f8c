"""Under ``CI=true`` a skipped test is a failure: CI must prove what a laptop is allowed to skip."""

from __future__ import annotations

import os
from typing import Any

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


class CiSkipRule:
    """Collect skipped tests; under CI=true, turn a green session with skips into a failed one."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped:
            self.skipped.append(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if in_ci() and self.skipped and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if in_ci() and self.skipped:
            terminalreporter.write_line(
                f"CI=true: {len(self.skipped)} skipped test(s) count as failures: {', '.join(self.skipped)}",
                red=True,
            )


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("ci-skip-rule"):
        config.pluginmanager.register(CiSkipRule(), "ci-skip-rule")
