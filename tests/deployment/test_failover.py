"""
Failover: the triggerer running a waiting gate dies (``kill -9``) or is stopped (``SIGTERM``);
the other triggerer adopts the trigger and the task completes, with at most 1 extra quota request.
"""

from __future__ import annotations

import time

import pytest

from tests.deployment.cluster import RUN_SETTINGS, TRIGGERERS
from tests.deployment.gate import DAG_ID, GATE, start_deferred_gate

pytestmark = pytest.mark.deployment
#: Long enough that the trigger is still waiting when the other triggerer adopts it
#: (adoption takes up to [triggerer] triggerer_health_check_threshold after a kill -9).
RESET_AFTER = 30.0
HEALTH_CHECK_THRESHOLD = float(RUN_SETTINGS[("triggerer", "triggerer_health_check_threshold")][0])


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
def test_the_other_triggerer_adopts_a_waiting_trigger(harness, stop):
    gate = start_deferred_gate(harness, reset_after=RESET_AFTER)
    victim = gate.trigger.triggerer_hostname
    assert victim in TRIGGERERS
    survivor = next(name for name in TRIGGERERS if name != victim)
    process = harness.deployment.processes[victim]

    stopped_at = time.monotonic()
    try:
        if stop == "kill -9":
            process.kill()
            exit_code = None
        else:
            exit_code = process.terminate()
        stop_seconds = time.monotonic() - stopped_at
        adopted = harness.trigger_of(DAG_ID, gate.run_id, not_on=victim, timeout=HEALTH_CHECK_THRESHOLD + 90)
        adoption_seconds = time.monotonic() - stopped_at

        assert adopted.triggerer_hostname == survivor
        assert adopted.trigger_id == gate.trigger.trigger_id  # the same trigger row, handed over
        assert harness.api.task_instance(DAG_ID, gate.run_id, GATE)["state"] == "deferred"
        run = harness.api.wait_for_run(DAG_ID, gate.run_id, timeout=240)
    finally:
        harness.restart(victim)  # both triggerers for the next scenarios
    assert run["state"] == "success"
    requests = harness.quota_requests()
    assert requests - 2 <= 1, f"{requests} quota requests: more than 1 extra after the handover"
    assert harness.api.task_instance(DAG_ID, gate.run_id, GATE)["try_number"] == 1  # no retry spent

    scenario = f"failover ({stop})"
    harness.results.figure(scenario, "from", victim)
    harness.results.figure(scenario, "to", survivor)
    harness.results.figure(scenario, "seconds to stop the triggerer", round(stop_seconds, 1))
    if exit_code is not None:
        harness.results.figure(scenario, "triggerer exit code", exit_code)
    harness.results.figure(scenario, "seconds from stop to adoption", round(adoption_seconds, 1))
    harness.results.figure(scenario, "quota requests", requests)
    harness.results.figure(scenario, "extra quota requests", requests - 2)
