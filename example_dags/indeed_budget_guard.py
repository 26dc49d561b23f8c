"""
Every morning, check each employer's Indeed sponsored-jobs spend and API quota for the month so far.

One mapped task per employer reads the month to date (one free usage request) and fails when the
spend runs 20 % ahead of a linear pace through the month (in the DAG's time zone), is already
over the monthly budget, or when 90 % of the employer's API quota is used. The failure message
lists every breach; the SMTP notifier of the official smtp provider mails it to finance, with no
code of ours.
"""

from __future__ import annotations

from datetime import datetime

import pendulum
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import DAG

from airflow_provider_quota.operators.indeed import IndeedBudgetCheckOperator

EMPLOYERS = ["emp-acme", "emp-globex", "emp-umbrella"]

with DAG(
    dag_id="indeed_budget_guard",
    schedule="0 7 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=pendulum.timezone("Europe/Paris")),
    catchup=False,
    tags=["indeed", "example"],
    doc_md=__doc__,
) as dag:
    IndeedBudgetCheckOperator.partial(
        task_id="check_budget",
        indeed_conn_id="indeed_default",
        month="current",  # the month to date; None would check the run's month
        budget="20000",  # a string or a Decimal: money is never a float
        currency="USD",
        max_pace="1.2",
        max_api_quota_used="0.9",
        on_failure_callback=SmtpNotifier(
            smtp_conn_id="smtp_default",
            from_email="airflow@example.com",
            to="finance@example.com",
            subject="Indeed budget alert: {{ ti.task_id }} [{{ ti.map_index }}] of {{ dag.dag_id }}",
            html_content="<p>{{ exception }}</p>",
        ),
    ).expand(employer_id=EMPLOYERS)
