"""The example quota gate (``prospecting_quota_gate``) as the gate and failover scenarios drive it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.deployment.harness import SONARLY_ACCOUNT_GROUP, Harness
from tests.deployment.metadata import TriggerRow

DAG_ID = "prospecting_quota_gate"
GATE = "wait_for_prospecting_quota"
TRIGGER_CLASSPATH = "airflow_provider_quota.triggers.sonarly.SonarlyQuotaResetTrigger"
#: The sandbox's quota: 0 of 25 left; with ``reset_after``, it resets that many seconds after the first check.
QUOTA_LIMIT = 25


@dataclass
class DeferredGate:
    run_id: str
    trigger: TriggerRow
    triggered_at: float
    deferred_after: float


def start_deferred_gate(harness: Harness, *, reset_after: float) -> DeferredGate:
    """Reset the sandbox with an exhausted quota, trigger a gate run, and wait until its trigger runs."""
    harness.reset_sandbox()
    harness.sandbox.set_quota(
        SONARLY_ACCOUNT_GROUP, limit=QUOTA_LIMIT, used=QUOTA_LIMIT, reset_after_first_check=reset_after
    )
    started = time.monotonic()
    run_id = harness.api.trigger(DAG_ID)
    ti = harness.api.wait_for_task(DAG_ID, run_id, GATE, {"deferred", "success", "failed"}, timeout=180)
    assert ti["state"] == "deferred", ti
    deferred_after = time.monotonic() - started
    trigger = harness.trigger_of(DAG_ID, run_id)
    assert trigger.classpath == TRIGGER_CLASSPATH
    return DeferredGate(run_id, trigger, started, deferred_after)


def quota_checks(harness: Harness) -> list[float]:
    """When the sandbox answered each quota request (its clock, seconds since the epoch)."""
    return [entry["at"] for entry in harness.sandbox.recent_requests() if entry["endpoint"] == "sonarly_quota"]
