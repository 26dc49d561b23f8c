"""Startup: every process of the deployment runs, reports healthy, and the DAGs are serialized."""

from __future__ import annotations

import pytest

from tests.deployment.cluster import TRIGGERERS
from tests.deployment.harness import ALIVE_WITHIN, EXPECTED_DAGS, PAUSED_AT_START

pytestmark = pytest.mark.deployment


def test_every_process_is_up_and_healthy(harness):
    health = harness.api.health()
    live_triggerers = harness.meta.live_jobs("TriggererJob", ALIVE_WITHIN)

    assert all(process.running() for process in harness.deployment.processes.values())
    assert {component: value["status"] for component, value in health.items()} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    assert set(TRIGGERERS) <= set(live_triggerers)  # two triggerer jobs, each heartbeating
    assert harness.celery_app().control.ping(timeout=2.0)  # the Celery worker answers the broker
    assert harness.api.dag_ids() >= EXPECTED_DAGS
    assert harness.api.import_errors() == []
    dags = {dag["dag_id"]: dag for dag in harness.api.get("/dags", params={"limit": 1000})["dags"]}
    assert {dag_id for dag_id in EXPECTED_DAGS if dags[dag_id]["is_paused"]} == PAUSED_AT_START
    harness.results.figure("startup", "triggerer jobs", sorted(live_triggerers))
