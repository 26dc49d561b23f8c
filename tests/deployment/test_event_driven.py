"""
Event-driven: the example DAG scheduled on quota windows gets one asset event and one run per window.

An ``AssetWatcher`` runs ``SonarlyQuotaWindowTrigger`` in a real triggerer (``dag.test()`` runs no
watcher), registered by the dag-processor once the DAG is unpaused; the scheduler turns each asset
event into a run. The sandbox's quota of ``ag_sandbox`` resets every ``WINDOW`` seconds.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.deployment.harness import Harness

pytestmark = pytest.mark.deployment

DAG_ID = "prospecting_on_quota_window"
ASSET_URI = "x-sonarly-quota://sonarly_default/ag_sandbox/LINKEDIN_CLASSIC"
WINDOW = 20.0
WINDOWS = 3


def watcher_triggers(harness: Harness) -> list[dict[str, Any]]:
    return harness.meta.rows(
        "SELECT t.id, t.classpath, t.triggerer_id FROM trigger t JOIN asset_watcher w ON w.trigger_id = t.id "
        "WHERE t.classpath LIKE '%SonarlyQuotaWindowTrigger'"
    )


def runs(harness: Harness) -> list[dict[str, Any]]:
    return list(harness.api.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"])


def consumed_events(harness: Harness, run_id: str) -> list[dict[str, Any]]:
    """The asset events a run was created for."""
    return list(harness.api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"])


def asset_events(harness: Harness) -> list[dict[str, Any]]:
    [asset] = [a for a in harness.api.get("/assets", params={"limit": 1000})["assets"] if a["uri"] == ASSET_URI]
    return list(harness.api.get("/assets/events", params={"asset_id": asset["id"], "limit": 100})["asset_events"])


def test_one_asset_event_and_one_run_per_quota_window(harness):
    harness.reset_sandbox()
    harness.sandbox.set_quota("ag_sandbox", limit=25, used=0, window_seconds=WINDOW, reset_in_seconds=WINDOW)
    harness.api.call("PATCH", "/dags/indeed_monthly_spend", json={"is_paused": True})  # no catchup from now on
    harness.restart("scheduler", settings={("scheduler", "use_job_schedule"): "True"})  # runs from asset events
    harness.api.unpause(DAG_ID)
    started = time.monotonic()
    try:
        watcher = harness.wait_until(
            "the quota window watcher running in a triggerer",
            lambda: [row for row in watcher_triggers(harness) if row["triggerer_id"] is not None],
            timeout=180,
        )
        registered = time.monotonic() - started
        harness.wait_until(
            f"{WINDOWS} runs, one per quota window",
            lambda: len(runs(harness)) >= WINDOWS,
            timeout=WINDOWS * WINDOW + 120,
        )
    finally:
        harness.api.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": True})
    listed = harness.wait_until(
        "every run of the DAG finished",
        lambda: (found := runs(harness)) and all(run["state"] in ("success", "failed") for run in found) and found,
        timeout=120,
    )
    events = asset_events(harness)
    windows = [event["extra"]["payload"]["reset_at"] for event in events]
    assert len(watcher) == 1  # one trigger for the watcher, whichever triggerer runs it
    assert len(set(windows)) == len(windows) >= WINDOWS  # never two events for one window
    assert all(event["extra"]["payload"]["exhausted"] is False for event in events)
    per_run = [[event["id"] for event in consumed_events(harness, run["dag_run_id"])] for run in listed]
    assert all(len(ids) == 1 for ids in per_run), per_run  # each run was started by one window's event...
    assert len({ids[0] for ids in per_run}) == len(listed)  # ...a different one for each run
    assert len(events) - len(listed) <= 1  # at most the window that opened as the DAG was paused has no run
    assert all(run["state"] == "success" for run in listed)
    assert all(run["run_type"] == "asset_triggered" for run in listed)
    checks = harness.quota_requests()
    assert checks <= len(events) + 2  # about one check per window: the watcher sleeps until each reset

    scenario = "event-driven: one run per quota window"
    record = harness.results.figure
    record(scenario, "seconds until the watcher ran in a triggerer", round(registered, 1))
    record(scenario, "quota windows of 20 s, asset events, runs", (len(windows), len(events), len(listed)))
    record(scenario, "quota requests", checks)
