"""The figures report itself: its verdict fails on a lost row, a duplicated row, a secret or a failed test."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.reliability import report

CLEAN: dict[str, Any] = {
    "full": True,
    "exitstatus": 0,
    "duration_seconds": 12.0,
    "tests": [
        {
            "nodeid": "tests/reliability/test_load.py::test_x",
            "section": "load",
            "outcome": "passed",
            "faults": {"429": 3, "500": 2},
            "requests": 40,
            "tasks": 2,
            "tasks_as_expected": 2,
            "rows_checked": 24,
            "rows_lost": 0,
            "rows_duplicated": 0,
            "tokens_issued": 1,
        }
    ],
    "scan": {
        "secrets_found": 0,
        "hits": {},
        "hits_by_channel": {},
        "secrets_searched": 3,
        "access_tokens_searched": 1,
        "characters_scanned": {"log": 1000, "stdout": 2000},
        "canary_hits_by_channel": {"log": 1, "stdout": 1},
    },
}
INFO = {"nproc": "2", "arch": "x86_64", "python": "3.11", "airflow": "3.3.2", "os": "Linux"}


def broken(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(CLEAN)
    target = data
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    return data


def test_clean_run_passes_and_prints_every_figure():
    assert report.summarize(CLEAN)["ok"] is True
    text = report.render(CLEAN, INFO, command="make reliability", wall_seconds=None)
    assert "| load | 1 | 5 | 40 | 2 of 2 | 24 | 0 | 0 |" in text
    assert "| 429 | 3 |" in text and "| 500 | 2 |" in text
    assert "| **secrets found** | **0** |" in text
    assert "Verdict: PASS" in text and "2 CPU(s)" in text and "Airflow 3.3.2" in text


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("tests.0.rows_lost", 1),
        ("tests.0.rows_duplicated", 1),
        ("tests.0.tasks_as_expected", 1),
        ("tests.0.outcome", "failed"),
        ("scan.secrets_found", 1),
        ("exitstatus", 1),
    ],
)
def test_any_bad_figure_fails_the_verdict(path, value):
    data = broken(path, value)
    assert report.summarize(data)["ok"] is False
    assert "Verdict: FAIL" in report.render(data, INFO, command="make reliability", wall_seconds=None)


def test_write_docs_replaces_only_the_figures_block(tmp_path, monkeypatch):
    docs = tmp_path / "reliability.md"
    docs.write_text(f"before\n{report.START_MARK}\nold figures\n{report.END_MARK}\nafter\n")
    monkeypatch.setattr(report, "DOCS", docs)
    report.write_docs("new figures")
    assert docs.read_text() == f"before\n{report.START_MARK}\nnew figures\n{report.END_MARK}\nafter\n"
