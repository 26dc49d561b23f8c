"""The example DAGs: they import cleanly, and run end to end with dag.test() against the sandbox."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, dag_test_callbacks_get_the_exception, read_xcom, set_connection

EXAMPLES = REPO / "example_dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(EXAMPLES))


def test_every_example_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    files = {Path(dag.fileloc).name for dag in dagbag.dags.values()}
    assert files == {path.name for path in EXAMPLES.glob("*.py")}
    for dag in dagbag.dags.values():
        assert dag.tasks, dag.dag_id


@pytest.mark.dag_test
def test_quota_gate_waits_for_the_reset_then_runs_prospecting(airflow_db, dagbag, sonarly_conn, sandbox):
    sandbox.set_quota("ag_sandbox", used=25, reset_after_first_check=2.0)
    started = time.monotonic()
    dag_run = dagbag.dags["prospecting_quota_gate"].test()
    waited = time.monotonic() - started
    assert dag_run.state == "success"
    assert sandbox.requests_to("sonarly_quota") == 2  # one poke, one check after the reset
    assert waited > 2.0
    gate = read_xcom(dag_run, "wait_for_prospecting_quota")
    assert gate["remaining"] == 25 and gate["exhausted"] is False
    assert read_xcom(dag_run, "start_prospecting") == gate["granted"] == 10  # what the gate granted


@pytest.mark.dag_test
def test_monthly_spend_maps_over_employers_into_sqlite(airflow_db, dagbag, indeed_conn, sandbox, monkeypatch, tmp_path):
    from airflow_provider_quota.hooks import indeed
    from airflow_provider_quota.utils.warehouse import get_db_hook

    set_connection(monkeypatch, "warehouse", conn_type="sqlite", host=str(tmp_path / "warehouse.db"))
    dag = dagbag.dags["indeed_monthly_spend"]
    for month_end in (datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2025, 2, 1, tzinfo=timezone.utc)):
        indeed._TOKENS.clear()  # each run starts with no token, as on a fresh worker process
        assert dag.test(logical_date=month_end).state == "success"
    stats = sandbox.stats()
    assert stats["tokens_issued"] == {"emp-acme": 2, "emp-globex": 2, "emp-eu-initech": 2}  # one per employer per run
    assert stats["requests"]["indeed_quota_usage"] == 6
    rows = get_db_hook("warehouse").get_records(
        "SELECT month, employer_id, spend_amount, currency_code FROM indeed_api_quota_usage ORDER BY month, employer_id"
    )
    assert [(month, employer) for month, employer, _, _ in rows] == [
        ("012025", "emp-acme"),
        ("012025", "emp-eu-initech"),
        ("012025", "emp-globex"),
        ("122024", "emp-acme"),
        ("122024", "emp-eu-initech"),
        ("122024", "emp-globex"),
    ]
    assert all(Decimal(spend) >= 0 for _, _, spend, _ in rows)
    assert {currency for *_, currency in rows} == {"USD", "EUR"}
    # rerunning a month updates the rows in place
    assert dag.test(logical_date=datetime(2025, 1, 1, tzinfo=timezone.utc)).state == "success"
    assert len(get_db_hook("warehouse").get_records("SELECT * FROM indeed_api_quota_usage")) == 6


def mail_text(message: Any) -> str:
    """The decoded text of every part of an email."""
    return "".join(part.get_payload(decode=True).decode() for part in message.walk() if not part.is_multipart())


@pytest.mark.dag_test
def test_budget_guard_mails_the_breaches_of_the_failing_employer_only(
    airflow_db, dagbag, indeed_conn, sandbox, smtp_server
):
    sandbox.set_usage("emp-acme", spend="0", requests_count=100, api_quota=3000)
    # over the whole month's budget at any time of the month, and 2,900 of 3,000 requests used
    sandbox.set_usage("emp-globex", spend="20000.01", requests_count=2900, api_quota=3000)
    sandbox.set_usage("emp-umbrella", spend="0", requests_count=0, api_quota=1500)
    dag_run = dagbag.dags["indeed_budget_guard"].test()
    assert dag_run.state == "failed"
    states = {ti.map_index: ti.state for ti in task_instances(dag_run, "check_budget")}
    assert states == {0: "success", 1: "failed", 2: "success"}
    assert read_xcom(dag_run, "check_budget", map_index=0)["breaches"] == []
    stats = sandbox.stats()
    assert stats["tokens_issued"] == {"emp-acme": 1, "emp-globex": 1, "emp-umbrella": 1}
    assert stats["requests"]["indeed_quota_usage"] == 3

    if not dag_test_callbacks_get_the_exception():  # Airflow 3.2: the notifier cannot render {{ exception }}
        assert smtp_server == []
        return
    [mail] = smtp_server  # the official SmtpNotifier, as on_failure_callback: no code of ours
    assert mail["To"] == "finance@example.com"
    assert mail["Subject"] == "Indeed budget alert: check_budget [1] of indeed_budget_guard"
    body = mail_text(mail)
    assert "Indeed budget check of employer emp-globex for " in body
    # every breach, whatever the day: over budget, ahead of pace (unless the month is over in Paris), API quota
    assert "1) spend 20000.01 USD for the month" in body and "is over the budget of 20000 USD" in body
    assert ") 2900 of 3000 API requests used in" in body and "at or above max_api_quota_used 0.9" in body


@pytest.mark.dag_test
def test_api_quota_gate_lets_the_task_call_within_the_quota(airflow_db, dagbag, indeed_conn, sandbox):
    sandbox.set_usage("emp-acme", requests_count=1200, api_quota=3000)
    dag_run = dagbag.dags["indeed_api_quota_gate"].test()
    assert dag_run.state == "success"
    assert read_xcom(dag_run, "wait_for_api_quota")["requests_left"] == 1800
    assert read_xcom(dag_run, "sync_campaigns") == 40
    assert sandbox.requests_to("indeed_quota_usage") == 1


def task_instances(dag_run: Any, task_id: str) -> list[Any]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return [ti for ti in dag_run.get_task_instances(session=session) if ti.task_id == task_id]
