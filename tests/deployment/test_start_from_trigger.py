"""
Start from the triggerer: with ``start_from_trigger=True`` the scheduler hands the gate straight to a
triggerer, which renders its templated ``min_remaining`` and makes every check; a worker runs the task
only once, to resume it with the grant.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.deployment.harness import SONARLY_ACCOUNT_GROUP

pytestmark = pytest.mark.deployment

DAG_ID = "deployment_gate_from_trigger"
RESET_AFTER = 10.0


def test_a_gate_started_in_the_triggerer_uses_no_worker_until_granted(harness):
    harness.reset_sandbox()
    harness.sandbox.set_quota(SONARLY_ACCOUNT_GROUP, limit=25, used=25, reset_after_first_check=RESET_AFTER)
    started = time.monotonic()
    run_id = harness.api.trigger(DAG_ID, conf={"searches": 7})
    ti = harness.api.wait_for_task(DAG_ID, run_id, "gate", {"deferred", "success", "failed"}, timeout=120)
    assert ti["state"] == "deferred", ti
    deferred_after = time.monotonic() - started
    [trigger] = harness.meta.triggers(DAG_ID, run_id)
    # The template is still in the trigger's kwargs: no worker rendered it, the scheduler deferred the task itself.
    assert "params.searches" in trigger.kwargs_text
    harness.wait_until("the first check, made by the triggerer", lambda: harness.quota_requests() >= 1, timeout=60)
    assert not [task for task in harness.worker_active_tasks() if DAG_ID in json.dumps(task)]  # no worker runs it

    run = harness.api.wait_for_run(DAG_ID, run_id, timeout=180)
    assert run["state"] == "success"
    xcom = harness.api.xcom(DAG_ID, run_id, "gate")
    assert (xcom["granted"], xcom["remaining"]) == (7, 25)  # the template rendered in the triggerer, as a number
    assert harness.quota_requests() == 2  # the first check and the one after the reset, both in the triggerer

    scenario = "start from the triggerer"
    harness.results.figure(scenario, "seconds until deferred (no worker)", round(deferred_after, 1))
    harness.results.figure(scenario, "quota requests, all in the triggerer", harness.quota_requests())
    harness.results.figure(scenario, "granted from the rendered template", xcom["granted"])
