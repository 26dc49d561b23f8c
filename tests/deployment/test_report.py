"""The results table of ``make integration`` (runs in ``make test``: no deployment needed)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from tests.deployment import report
from tests.deployment.results import SCENARIO_ORDER, scenario_rank

SAMPLE = {
    "wall_seconds": 480.4,
    "finished_at": "2026-12-01 03:35 UTC",
    "outcomes": {
        "tests/deployment/test_secrets.py::test_scan": {"outcome": "passed", "seconds": 15.0, "failure": ""},
        "tests/deployment/test_gate.py::test_gate": {"outcome": "failed", "seconds": 33.5, "failure": "boom"},
    },
    "figures": {
        "environment": {"PostgreSQL": "15.20", "Redis": "7.0.15"},
        "gate": {"quota requests": 2, "triggerer": "triggerer-2"},
        "fleet: 200 gates": {"triggers per triggerer": {"triggerer-1": 139, "triggerer-2": 61}},
        "capacity": {
            "triggerer-1": {
                "triggers": 139,
                "uss_mib_idle": 153.3,
                "uss_mib_waiting": 169.4,
                "rss_mib_waiting": 450.3,
                "cpu_percent_waiting": 1.4,
                "seconds_sampled": 30.0,
            }
        },
    },
}


def test_the_table_lists_scenarios_in_run_order_with_their_figures():
    block = report.render(SAMPLE, command="make integration")

    assert block.startswith("Command: `make integration`, 2026-12-01 03:35 UTC, 480 s.")
    assert "Servers: PostgreSQL 15.20, Redis 7.0.15." in block
    assert block.index("gate: `test_gate`") < block.index("secrets: `test_scan`")  # the order they ran in
    assert "| gate: `test_gate` | failed | 33.5 |" in block
    assert "| fleet: 200 gates | triggers per triggerer | triggerer-1 139, triggerer-2 61 |" in block
    assert "| triggerer-1 | 139 | 153.3 | 169.4 | 450.3 | 1.4 % | 30.0 s |" in block
    assert "| `[triggerer] triggerer_health_check_threshold` | 15 | 30 | failover within a test's time |" in block
    assert block.endswith("Tests: 1 passed, 1 failed.")


def test_write_docs_replaces_only_the_results_block(tmp_path, monkeypatch):
    docs = tmp_path / "deployment.md"
    docs.write_text(f"before\n{report.START_MARK}\nold results\n{report.END_MARK}\nafter\n")
    monkeypatch.setattr(report, "DOCS", docs)

    report.write_docs("new results")

    assert docs.read_text() == f"before\n{report.START_MARK}\nnew results\n{report.END_MARK}\nafter\n"


def test_a_new_scenario_module_runs_before_the_secrets_scan():
    assert scenario_rank("test_startup.py") == 0
    assert scenario_rank("test_fleet.py") < scenario_rank("test_event_driven.py") < scenario_rank("test_secrets.py")


@pytest.mark.parametrize("module", SCENARIO_ORDER)
def test_every_scenario_module_is_marked_deployment_so_make_test_deselects_it(module):
    marks = importlib.import_module(f"tests.deployment.{Path(module).stem}").pytestmark
    assert any(mark.name == "deployment" for mark in (marks if isinstance(marks, list) else [marks]))


def test_the_committed_results_are_of_a_run_where_every_scenario_passed():
    text = report.DOCS.read_text()
    block = text[text.index(report.START_MARK) : text.index(report.END_MARK)]
    passed, failed = map(int, re.search(r"Tests: (\d+) passed, (\d+) failed\.", block).groups())  # type: ignore[union-attr]
    assert failed == 0 and passed > 0
    for module in SCENARIO_ORDER:
        assert f"| {Path(module).stem.removeprefix('test_')}: `" in block, f"{module} is missing from the results"
