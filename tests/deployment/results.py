"""Figures the scenarios measure, and each scenario's outcome, saved as JSON for the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Scenario modules in the order they run (tests/deployment/conftest.py sorts them so): the secrets
#: scan last, over everything the others left. A new scenario module goes in here.
SCENARIO_ORDER = [
    "test_startup.py",
    "test_gate.py",
    "test_start_from_trigger.py",
    "test_failover.py",
    "test_connection_test.py",
    "test_bad_input.py",
    "test_spend.py",
    "test_fleet.py",
    "test_event_driven.py",
    "test_secrets.py",
]


def scenario_rank(module: str) -> float:
    """Where a scenario module runs: by SCENARIO_ORDER, a module not listed there just before the secrets scan."""
    return SCENARIO_ORDER.index(module) if module in SCENARIO_ORDER else len(SCENARIO_ORDER) - 1.5


class Results:
    """
    What one run measured: ``figure(scenario, name, value)`` and the outcome of every test.

    :param path: the JSON file, rewritten at every save.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.figures: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, dict[str, Any]] = {}

    def figure(self, scenario: str, name: str, value: Any) -> None:
        self.figures.setdefault(scenario, {})[name] = value
        self.save()

    def outcome(self, nodeid: str, outcome: str, seconds: float, failure: str = "") -> None:
        self.outcomes[nodeid] = {"outcome": outcome, "seconds": round(seconds, 1), "failure": failure}
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"figures": self.figures, "outcomes": self.outcomes}  # in the order the scenarios ran
        self.path.write_text(json.dumps(data, indent=2, default=str))
