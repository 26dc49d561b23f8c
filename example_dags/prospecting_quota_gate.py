"""
Gate a Sonarly prospecting run on the account group's prospecting quota.

The deferrable sensor checks the quota once; when it is exhausted it sleeps in the
triggerer until ``resetAt`` (no worker slot held), checks once more, and lets the
prospecting task run with the quota in XCom. The task starts no more searches than the gate
granted it (``min_remaining``): many DAGs gated on one account group then never plan more
searches than the quota holds.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from airflow.sdk import DAG, task

from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor

log = logging.getLogger(__name__)

#: Searches one prospecting run starts: what it asks the gate to grant.
BATCH_SIZE = 10

with DAG(
    dag_id="prospecting_quota_gate",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["sonarly", "example"],
    doc_md=__doc__,
) as dag:
    wait_for_quota = SonarlyQuotaSensor(
        task_id="wait_for_prospecting_quota",
        sonarly_conn_id="sonarly_default",  # the connection's extra names the account group
        list_type="LINKEDIN_CLASSIC",
        min_remaining=BATCH_SIZE,
        deferrable=True,
        poke_interval=60,  # used only when the API gives no resetAt
        timeout=6 * 3600,
    )

    @task
    def start_prospecting(quota: dict) -> int:
        searches = quota["granted"]  # never quota["remaining"]: other gates may hold the rest
        log.info(
            "Quota has %d of %d %s searches left: starting the %d search(es) granted",
            quota["remaining"],
            quota["limit"],
            quota["list_type"],
            searches,
        )
        return searches

    start_prospecting(wait_for_quota.output)
