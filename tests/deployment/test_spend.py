"""
Spend: the monthly spend example writes one row per (employer, month) to a PostgreSQL warehouse,
and keeps one through a clear, a REST backfill and a Celery worker killed mid-extraction.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_quota.sandbox.state import quota_usage_data
from tests.deployment.harness import Harness

pytestmark = pytest.mark.deployment

DAG_ID = "indeed_monthly_spend"
TASK = "extract_api_quota_usage"
TABLE = "indeed_api_quota_usage"
EMPLOYERS = ["emp-acme", "emp-globex", "emp-eu-initech"]  # as in example_dags/indeed_monthly_spend.py
MONTHS = [date(2024, 12, 1), date(2025, 1, 1), date(2025, 2, 1)]
CRASH_MONTH = date(2025, 3, 1)
#: The sandbox holds every usage request of the crash run this long: the worker dies meanwhile.
STALL_SECONDS = 25.0


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def trigger_month(harness: Harness, month: date) -> str:
    """A run for one month, as the interval timetable would schedule it (logical date = interval start)."""
    return harness.api.trigger(
        DAG_ID,
        logical_date=_utc(month),
        data_interval_start=_utc(month).isoformat(),
        data_interval_end=_utc(_next_month(month)).isoformat(),
    )


def warehouse_rows(harness: Harness) -> dict[tuple[str, str], dict[str, Any]]:
    """The warehouse table by (employer_id, month); fails on a duplicated key."""
    import psycopg2
    import psycopg2.extras

    with (
        psycopg2.connect(harness.warehouse_url) as connection,
        connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor,
    ):
        cursor.execute(f"SELECT * FROM {TABLE}")
        rows = cursor.fetchall()
    keyed = {(row["employer_id"], row["month"]): dict(row) for row in rows}
    assert len(keyed) == len(rows), "duplicated (employer_id, month) rows"
    return keyed


def expected_row(employer: str, month: date) -> dict[str, Any]:
    """What the sandbox serves for a past month: the oracle."""
    data = quota_usage_data(employer, month, time.time())
    return {
        "api_quota": data["apiQuota"],
        "requests_count": sum(part["requestsCount"] for part in data["apiUsage"]),
        "spend_amount": Decimal(data["sponsoredJobsSpendAmount"]),
        "currency_code": data["currencyCode"],
    }


def assert_rows_match_the_api(rows: dict[tuple[str, str], dict[str, Any]], months: list[date]) -> None:
    assert set(rows) == {(employer, f"{month:%m%Y}") for employer in EMPLOYERS for month in months}
    for (employer, _), row in rows.items():
        month = row["month_start"]
        actual = {name: row[name] for name in ("api_quota", "requests_count", "spend_amount", "currency_code")}
        assert actual == expected_row(employer, month), (employer, month)


@pytest.fixture(scope="module")
def spend_runs(harness: Harness) -> dict[date, str]:
    """The three monthly runs, created through the REST API; run id by month."""
    harness.reset_sandbox()
    runs = {month: trigger_month(harness, month) for month in MONTHS}
    for run_id in runs.values():
        assert harness.api.wait_for_run(DAG_ID, run_id, timeout=300)["state"] == "success"
    return runs


def test_three_months_for_three_employers_write_nine_rows(harness, spend_runs):
    rows = warehouse_rows(harness)

    assert len(rows) == 9
    assert_rows_match_the_api(rows, MONTHS)
    requests = harness.sandbox.stats()["requests"]
    assert requests["indeed_quota_usage"] == 9
    harness.results.figure("spend: 3 months x 3 employers", "rows", len(rows))
    harness.results.figure("spend: 3 months x 3 employers", "usage requests", requests["indeed_quota_usage"])
    harness.results.figure("spend: 3 months x 3 employers", "token requests", requests["indeed_token"])


def test_clearing_a_task_rewrites_its_row_in_place(harness, spend_runs):
    before = warehouse_rows(harness)
    month = MONTHS[1]
    run_id = spend_runs[month]
    cleared = harness.api.clear(DAG_ID, run_id, [(TASK, 1)])
    assert [(ti["task_id"], ti["map_index"]) for ti in cleared] == [(TASK, 1)]

    assert harness.api.wait_for_run(DAG_ID, run_id, timeout=300)["state"] == "success"
    after = warehouse_rows(harness)

    assert len(after) == 9
    assert_rows_match_the_api(after, MONTHS)
    rerun_key = (EMPLOYERS[1], f"{month:%m%Y}")
    assert after[rerun_key]["extracted_at"] > before[rerun_key]["extracted_at"]
    assert {key: row for key, row in after.items() if key != rerun_key} == {
        key: row for key, row in before.items() if key != rerun_key
    }
    assert harness.api.task_instance(DAG_ID, run_id, TASK, 1)["try_number"] == 2
    harness.results.figure("spend: clear one task and rerun", "rows", len(after))
    harness.results.figure("spend: clear one task and rerun", "rows rewritten", 1)


def test_a_rest_backfill_over_the_same_months_rewrites_the_same_rows(harness, spend_runs):
    before = warehouse_rows(harness)
    started = time.monotonic()
    backfill = harness.api.create_backfill(
        DAG_ID, _utc(MONTHS[0]), _utc(MONTHS[-1]), reprocess_behavior="completed", max_active_runs=3
    )

    def finished() -> dict[str, Any] | None:
        state = harness.api.backfill(backfill["id"])
        return state if state.get("completed_at") else None

    deadline = time.monotonic() + 300
    while not (state := finished()):
        assert time.monotonic() < deadline, f"backfill {backfill['id']} not completed after 300 s"
        time.sleep(1)
    after = warehouse_rows(harness)

    runs = harness.api.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
    backfilled = [run for run in runs if run["run_type"] == "backfill" or run.get("backfill_id") == backfill["id"]]
    assert {run["state"] for run in backfilled} == {"success"}, backfilled
    assert len(after) == 9
    assert_rows_match_the_api(after, MONTHS)
    assert all(after[key]["extracted_at"] > before[key]["extracted_at"] for key in after)  # every row rewritten
    harness.results.figure("spend: REST backfill of the 3 months", "rows", len(after))
    harness.results.figure("spend: REST backfill of the 3 months", "runs", len(backfilled))
    harness.results.figure("spend: REST backfill of the 3 months", "seconds", round(time.monotonic() - started, 1))
    del state


def test_a_worker_killed_mid_extraction_leaves_no_partial_rows_and_the_retry_completes(harness, spend_runs):
    harness.reset_sandbox()
    harness.sandbox.add_fault("stall", endpoint="indeed_quota_usage", count=len(EMPLOYERS), seconds=STALL_SECONDS)
    month_key = f"{CRASH_MONTH:%m%Y}"
    run_id = trigger_month(harness, CRASH_MONTH)

    def all_mid_extraction() -> bool:
        return harness.sandbox.requests_to("indeed_quota_usage") == len(EMPLOYERS)

    deadline = time.monotonic() + 180
    while not all_mid_extraction():
        assert time.monotonic() < deadline, "the extraction tasks never reached the usage request"
        time.sleep(0.2)
    tis = harness.api.task_instances(DAG_ID, run_id, TASK)
    assert {ti["state"] for ti in tis} == {"running"}, tis
    killed_at = time.monotonic()
    harness.deployment.processes["worker-1"].kill()  # the worker node dies: worker, pool and task processes
    try:
        assert not [key for key in warehouse_rows(harness) if key[1] == month_key]  # nothing half-written
    finally:
        harness.restart("worker-1")
    assert harness.api.wait_for_run(DAG_ID, run_id, timeout=360)["state"] == "success"
    recovered = time.monotonic() - killed_at
    rows = warehouse_rows(harness)

    assert len(rows) == 12
    assert_rows_match_the_api(rows, [*MONTHS, CRASH_MONTH])
    tries = {ti["map_index"]: ti["try_number"] for ti in harness.api.task_instances(DAG_ID, run_id, TASK)}
    assert tries == dict.fromkeys(range(len(EMPLOYERS)), 2)  # the killed try, then the retry
    history = harness.meta.try_history(DAG_ID, run_id)
    assert {(row["try_number"], row["state"]) for row in history} == {(1, "failed")}, history
    scenario = "spend: Celery worker killed mid-extraction"
    harness.results.figure(scenario, "rows of the month while the worker was dead", 0)
    harness.results.figure(scenario, "rows after the retry", len(rows))
    harness.results.figure(scenario, "seconds from kill to success", round(recovered, 1))
    harness.results.figure(scenario, "usage requests", harness.sandbox.requests_to("indeed_quota_usage"))
