"""Gate: a deferrable gate run waits in a real triggerer, holds no worker slot, and costs 2 quota requests."""

from __future__ import annotations

import time

import pytest

from tests.deployment.cluster import TRIGGERERS
from tests.deployment.gate import DAG_ID, GATE, QUOTA_LIMIT, quota_checks, start_deferred_gate

pytestmark = pytest.mark.deployment
RESET_AFTER = 15.0


def test_gate_waits_in_a_triggerer_without_a_worker_slot_and_costs_two_quota_requests(harness):
    gate = start_deferred_gate(harness, reset_after=RESET_AFTER)
    assert gate.trigger.triggerer_hostname in TRIGGERERS
    # The Celery task ends a moment after the task instance turned deferred (the supervisor finishes up).
    harness.wait_until("the worker slot freed", lambda: harness.worker_active_tasks() == [], timeout=60)
    slot_freed_after = time.monotonic() - gate.triggered_at
    pool = harness.api.pool()
    assert (pool["running_slots"], pool["deferred_slots"]) == (0, 1), pool
    assert harness.api.task_instance(DAG_ID, gate.run_id, GATE)["state"] == "deferred"  # still waiting...
    assert harness.quota_requests() == 1  # ...after the worker's first check only
    harness.snapshot_metadata("while the gate waited")

    run = harness.api.wait_for_run(DAG_ID, gate.run_id, timeout=240)
    waited = time.monotonic() - gate.triggered_at

    assert run["state"] == "success"
    quota = harness.api.xcom(DAG_ID, gate.run_id, GATE)
    assert (quota["remaining"], quota["limit"], quota["exhausted"]) == (QUOTA_LIMIT, QUOTA_LIMIT, False)
    assert harness.api.xcom(DAG_ID, gate.run_id, "start_prospecting") == 10
    checks = quota_checks(harness)
    assert len(checks) == harness.quota_requests() == 2
    assert checks[1] - checks[0] >= RESET_AFTER  # the trigger's check came after the reset, not before
    ti = harness.api.task_instance(DAG_ID, gate.run_id, GATE)
    assert ti["try_number"] == 1
    log = harness.api.task_log(DAG_ID, gate.run_id, GATE, 1)
    assert "usable after 1 check(s) in the triggerer" in log

    figures = {
        "triggerer": gate.trigger.triggerer_hostname,
        "seconds to deferred": round(gate.deferred_after, 1),
        "seconds until the worker ran nothing": round(slot_freed_after, 1),
        "seconds from first check to trigger check": round(checks[1] - checks[0], 1),
        "seconds from trigger to success": round(waited, 1),
        "worker tasks while deferred": 0,
        "quota requests": len(checks),
    }
    for name, value in figures.items():
        harness.results.figure("gate", name, value)
