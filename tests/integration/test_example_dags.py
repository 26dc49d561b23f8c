"""The example DAGs: they import cleanly, and run end to end with dag.test() against the sandbox."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import REPO, read_xcom, set_connection

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
    assert read_xcom(dag_run, "start_prospecting") == 10  # min(remaining, BATCH_SIZE)


@pytest.mark.dag_test
def test_monthly_spend_maps_over_employers_into_sqlite(airflow_db, dagbag, indeed_conn, sandbox, monkeypatch, tmp_path):
    from airflow_provider_quota.hooks import indeed
    from airflow_provider_quota.warehouse import get_db_hook

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
