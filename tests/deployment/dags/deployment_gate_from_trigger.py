"""
``make integration``: a gate that starts in the triggerer (``start_from_trigger``, Airflow 3.3).

Its ``min_remaining`` is a template the triggerer renders; no worker runs it until the quota is granted.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG, Param

from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor

with DAG(
    dag_id="deployment_gate_from_trigger",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={"searches": Param(7, type="integer", minimum=1)},
    tags=["integration"],
):
    SonarlyQuotaSensor(
        task_id="gate",
        list_type="LINKEDIN_CLASSIC",
        min_remaining="{{ params.searches }}",
        deferrable=True,
        start_from_trigger=True,
        poke_interval=60,
        timeout=600,
        retries=0,
    )
