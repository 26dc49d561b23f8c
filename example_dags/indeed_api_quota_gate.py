"""
Hold an Indeed-calling task while the employer's monthly API quota is nearly spent.

Past ``apiQuota`` every Indeed integration of the employer fails until the month ends, so the
task that calls the Sponsored Jobs API waits behind a gate. The deferrable gate checks the
quota once (a free usage request); at 95 % or more it sleeps in the triggerer until the month
rolls over (no worker slot held, no polling), checks once more and lets the task run with the
usage in XCom.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from airflow.sdk import DAG, task

from airflow_provider_quota.sensors.indeed import IndeedApiQuotaSensor

log = logging.getLogger(__name__)

#: Sponsored Jobs API calls one run makes.
CALLS_PER_RUN = 40

with DAG(
    dag_id="indeed_api_quota_gate",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["indeed", "example"],
    doc_md=__doc__,
) as dag:
    gate = IndeedApiQuotaSensor(
        task_id="wait_for_api_quota",
        indeed_conn_id="indeed_default",
        employer_id="emp-acme",
        max_used=0.95,  # hold at 95 % of apiQuota
        min_requests_left=CALLS_PER_RUN,
        deferrable=True,
        timeout=32 * 24 * 3600,  # a month and a day: past the next rollover
    )

    @task
    def sync_campaigns(usage: dict) -> int:
        calls = min(usage["requests_left"], CALLS_PER_RUN)
        log.info(
            "Employer %s has %d of %d API requests left in %s: making %d call(s)",
            usage["employer_id"],
            usage["requests_left"],
            usage["api_quota"],
            usage["month"],
            calls,
        )
        return calls

    sync_campaigns(gate.output)
