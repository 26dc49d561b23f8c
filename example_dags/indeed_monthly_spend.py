"""
Every month, per employer, extract Indeed Sponsored Jobs API usage, quota and spend into a warehouse.

The interval timetable makes each run responsible for its data interval's month, so the
first run (interval December 2024) extracts 122024, the first month the API reports.
(With Airflow 3's default trigger timetable for "@monthly", a run extracts the month
before its logical date, and a start date of 2024-12-01 would ask for November 2024.)
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG, CronDataIntervalTimetable

from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator

EMPLOYERS = ["emp-acme", "emp-globex", "emp-eu-initech"]

with DAG(
    dag_id="indeed_monthly_spend",
    schedule=CronDataIntervalTimetable("@monthly", timezone="UTC"),
    start_date=datetime(2024, 12, 1, tzinfo=timezone.utc),
    catchup=True,
    max_active_runs=2,
    tags=["indeed", "example"],
    doc_md=__doc__,
) as dag:
    IndeedQuotaUsageOperator.partial(
        task_id="extract_api_quota_usage",
        indeed_conn_id="indeed_default",
        sql_conn_id="warehouse",
        table="indeed_api_quota_usage",
    ).expand(employer_id=EMPLOYERS)
