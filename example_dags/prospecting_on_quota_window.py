"""
Schedule prospecting on the quota itself: one DAG run per quota window in which the quota is usable.

An asset watcher runs ``SonarlyQuotaWindowTrigger`` in the triggerer: it sleeps until the
account group's ``resetAt``, checks the quota once, and records one asset event per window with
at least ``min_remaining`` searches left. Each event starts one run of this DAG; the task reads
the quota from the event. Watchers need a real scheduler, dag-processor and triggerer (``dag.test()``
does not run them) and the DAG unpaused.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_quota.triggers.sonarly import SonarlyQuotaWindowTrigger

log = logging.getLogger(__name__)

#: Searches one run starts at most: never more than the window holds.
BATCH_SIZE = 10

prospecting_quota = Asset(
    name="sonarly_prospecting_quota_ag_sandbox",
    uri="x-sonarly-quota://sonarly_default/ag_sandbox/LINKEDIN_CLASSIC",
    watchers=[
        AssetWatcher(
            name="prospecting_quota_window",
            trigger=SonarlyQuotaWindowTrigger(
                sonarly_conn_id="sonarly_default",
                account_group_id="ag_sandbox",
                list_type="LINKEDIN_CLASSIC",
                min_remaining=BATCH_SIZE,
                poke_interval=60.0,
                jitter=5.0,
            ),
        )
    ],
)

with DAG(
    dag_id="prospecting_on_quota_window",
    schedule=[prospecting_quota],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["sonarly", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def start_prospecting(triggering_asset_events=None) -> int:
        # The newest event: the window this run is for (the payload is the quota the watcher read).
        [event] = [event for events in triggering_asset_events.values() for event in events][-1:]
        quota = event.extra["payload"]
        searches = min(quota["remaining"], BATCH_SIZE)
        log.info("Window until %s: %d left, starting %d search(es)", quota["reset_at"], quota["remaining"], searches)
        return searches

    start_prospecting()
