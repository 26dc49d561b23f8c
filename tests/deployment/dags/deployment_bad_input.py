"""
``make integration``: inputs that must fail at once, whatever the retries, with the reason in the log.

Each task has retries configured; none may be spent.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor

RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=5)}

with DAG(
    dag_id="deployment_bad_input",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["integration"],
):
    SonarlyQuotaSensor(
        task_id="unknown_account_group",
        account_group_id="ag_does_not_exist",
        deferrable=True,
        timeout=600,
        **RETRIES,
    )
    SonarlyQuotaSensor(
        task_id="revoked_key",
        sonarly_conn_id="sonarly_revoked",
        deferrable=True,
        timeout=600,
        **RETRIES,
    )
    IndeedQuotaUsageOperator(
        task_id="future_month",
        employer_id="emp-acme",
        month="122099",
        **RETRIES,
    )
