"""The one private hook of BaseSensorOperator the quota gates rely on: fail loudly if Airflow changes it."""

from __future__ import annotations

import inspect

from airflow.sdk import BaseSensorOperator

from airflow_provider_quota.sensors.base import QuotaGateSensor


def test_poke_mode_timing_hook_is_still_what_the_gates_override():
    """Poke mode has no public way to time the next poke; QuotaGateSensor overrides this private method."""
    expected = ["self", "started_at", "run_duration", "poke_count"]
    assert list(inspect.signature(BaseSensorOperator._get_next_poke_interval).parameters) == expected
    assert list(inspect.signature(QuotaGateSensor._get_next_poke_interval).parameters) == expected
    # ...and BaseSensorOperator.execute still asks it how long to sleep in poke mode.
    assert "time.sleep(self._get_next_poke_interval(" in inspect.getsource(BaseSensorOperator.execute)
