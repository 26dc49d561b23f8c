"""
``make integration``: N deferrable quota gates on one account group, mapped in one run.

The run's conf sets the account group and the number of gates (``{"account_group": "ag_fleet",
"gates": 200}``); the fleet scenario waits on 200, the secrets scan's canary on 1.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG, Param, task

from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor

with DAG(
    dag_id="deployment_gates",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_tasks=1000,
    params={"account_group": Param("ag_fleet", type="string"), "gates": Param(1, type="integer", minimum=1)},
    tags=["integration"],
):

    @task
    def gates(params: dict) -> list[int]:
        """One ``min_remaining`` per gate."""
        return [1] * params["gates"]

    SonarlyQuotaSensor.partial(
        task_id="gate",
        account_group_id="{{ params.account_group }}",
        list_type="LINKEDIN_CLASSIC",
        deferrable=True,
        poke_interval=60,
        timeout=3600,
        retries=0,
    ).expand(min_remaining=gates())
