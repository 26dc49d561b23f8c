"""IndeedQuotaUsageOperator: which month, XCom shape, warehouse upserts on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.utils.months import month_for_run
from airflow_provider_quota.utils.warehouse import get_db_hook, warehouse_table_asset
from tests.conftest import INDEED_SECRET, WAREHOUSES, fail_writes_of, set_connection, warehouse_conn_id

NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def run_context(start: datetime | None, end: datetime | None, logical: datetime | None = None) -> dict[str, Any]:
    return {"data_interval_start": start, "data_interval_end": end, "logical_date": logical}


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        # interval timetable: the data interval's month
        (run_context(utc(2025, 3, 1), utc(2025, 4, 1), utc(2025, 3, 1)), date(2025, 3, 1)),
        # trigger timetable (start == end == logical date): the month before
        (run_context(utc(2025, 4, 1), utc(2025, 4, 1), utc(2025, 4, 1)), date(2025, 3, 1)),
        (run_context(utc(2025, 1, 1), utc(2025, 1, 1), utc(2025, 1, 1)), date(2024, 12, 1)),
        # manual run with a logical date, no interval
        (run_context(None, None, utc(2025, 7, 15, 10)), date(2025, 6, 1)),
        # the DAG's own time zone decides the month, not UTC
        (
            run_context(
                datetime(2025, 3, 1, tzinfo=timezone(timedelta(hours=9))),
                datetime(2025, 4, 1, tzinfo=timezone(timedelta(hours=9))),
            ),
            date(2025, 3, 1),
        ),
    ],
)
def test_month_for_run(context, expected):
    assert month_for_run(context) == expected


PARIS = pendulum.timezone("Europe/Paris")


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        # interval timetable at midnight in Paris: the interval starts 2025-01-31 23:00 UTC
        (run_context(utc(2025, 1, 31, 23), utc(2025, 2, 28, 23), utc(2025, 1, 31, 23)), date(2025, 2, 1)),
        # trigger timetable: the run of 2025-03-01 00:00 in Paris is 2025-02-28 23:00 UTC
        (run_context(utc(2025, 2, 28, 23), utc(2025, 2, 28, 23), utc(2025, 2, 28, 23)), date(2025, 2, 1)),
        # manual run a minute after midnight in Paris on 1 December
        (run_context(None, None, utc(2024, 11, 30, 23, 1)), date(2024, 11, 1)),
    ],
)
def test_month_for_run_reads_utc_dates_in_the_dag_time_zone(context, expected):
    context["dag"] = SimpleNamespace(timezone=PARIS)
    assert month_for_run(context) == expected


PARIS_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator

PARIS = pendulum.timezone("Europe/Paris")
with DAG(
    "paris_monthly_spend",
    schedule=CronTriggerTimetable("0 0 1 * *", timezone=PARIS),
    start_date=pendulum.datetime(2025, 1, 1, tz=PARIS),
    catchup=False,
):
    IndeedQuotaUsageOperator(task_id="extract", employer_id="emp-acme")
"""


@pytest.mark.dag_test
def test_a_paris_monthly_dag_extracts_the_month_it_is_for(airflow_db, indeed_conn, sandbox, tmp_path, monkeypatch):
    """A real dag.test() run: the task SDK hands the operator UTC dates, the month is read in Paris."""
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import read_xcom

    (tmp_path / "paris_monthly_spend.py").write_text(PARIS_DAG)
    # dag.test() syncs the "dags-folder" bundle, whose path is settings.DAGS_FOLDER.
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path))
    dag = DagBag(dag_folder=str(tmp_path)).dags["paris_monthly_spend"]
    dag_run = dag.test(logical_date=pendulum.datetime(2025, 3, 1, tz=PARIS))
    assert dag_run.state == "success"
    assert read_xcom(dag_run, "extract")["month"] == "022025"


def test_manual_run_without_logical_date_uses_run_after():
    context = {"logical_date": None, "dag_run": SimpleNamespace(run_after=utc(2026, 2, 3))}
    assert month_for_run(context) == date(2026, 1, 1)


def test_default_month_xcom_record(indeed_conn, sandbox):
    result = IndeedQuotaUsageOperator(task_id="extract").execute(run_context(utc(2025, 3, 1), utc(2025, 4, 1)))
    assert result["month"] == "032025" and result["employer_id"] == "emp-acme"
    assert isinstance(result["spend_amount"], str) and Decimal(result["spend_amount"]) >= 0
    assert json.loads(json.dumps(result)) == result  # plain JSON: no Decimal, no date objects
    assert set(result) == {
        "employer_id",
        "month",
        "month_start",
        "api_quota",
        "requests_count",
        "spend_amount",
        "currency_code",
        "api_usage",
        "extracted_at",
    }
    assert sandbox.recent_requests()[-1]["query"] == "monthYear=032025"


def test_exact_decimal_round_trip_through_xcom(indeed_conn, sandbox):
    result = IndeedQuotaUsageOperator(task_id="extract", employer_id="emp-precise-9", month="2025-02").execute({})
    assert result["spend_amount"] == "1236.567890123456789012345"
    assert Decimal(json.loads(json.dumps(result))["spend_amount"]) == Decimal("1236.567890123456789012345")


def test_current_month_to_date(indeed_conn, sandbox):
    result = IndeedQuotaUsageOperator(task_id="extract", month="current").execute({})
    now = datetime.now(UTC)
    assert result["month"] == f"{now.month:02d}{now.year}"
    assert sandbox.recent_requests()[-1]["query"] == ""


def test_backfill_list_uses_one_token_and_skips_duplicates(indeed_conn, sandbox):
    months = ["122024", "012025", "2025-02", "122024"]
    result = IndeedQuotaUsageOperator(task_id="backfill", month=months).execute({})
    assert [record["month"] for record in result] == ["122024", "012025", "022025"]
    stats = sandbox.stats()
    assert stats["requests"]["indeed_token"] == 1
    assert stats["requests"]["indeed_quota_usage"] == 3


def test_default_month_before_the_first_month_fails_without_request(indeed_conn, sandbox):
    with pytest.raises(AirflowFailException, match="before 122024"):
        IndeedQuotaUsageOperator(task_id="extract").execute(run_context(utc(2024, 12, 1), utc(2024, 12, 1)))
    assert sandbox.stats()["total_requests"] == 0


def test_permanent_api_errors_fail_without_retry(indeed_conn, sandbox):
    sandbox.add_fault("status", status=403, endpoint="indeed_quota_usage")
    with pytest.raises(AirflowFailException, match="HTTP 403"):
        IndeedQuotaUsageOperator(task_id="extract", month="122024").execute({})


def test_nothing_secret_in_xcom(indeed_conn, sandbox):
    from airflow_provider_quota.hooks import indeed

    result = IndeedQuotaUsageOperator(task_id="extract", month=["122024", "012025"]).execute({})
    dumped = json.dumps(result)
    tokens = [cached.value for cached in indeed._TOKENS.values()]
    assert tokens
    for secret in (INDEED_SECRET, *tokens):
        assert secret not in dumped


@pytest.mark.parametrize("table", ["x; DROP TABLE y", 'quoted"name', "a.b.c", "1starts_with_digit", "with space", ""])
def test_table_names_that_are_not_identifiers_are_refused(table):
    with pytest.raises(ValueError, match=r"not an SQL identifier|table"):
        IndeedQuotaUsageOperator(task_id="extract", sql_conn_id="w", table=table)


def test_templated_table_is_validated_after_rendering(indeed_conn, sqlite_conn, sandbox):
    operator = IndeedQuotaUsageOperator(task_id="extract", month="122024", sql_conn_id=sqlite_conn, table="{{ x }}")
    operator.table = "bad name"  # what rendering produced
    with pytest.raises(AirflowFailException, match="not an SQL identifier"):
        operator.execute({})
    assert sandbox.stats()["total_requests"] == 0


def test_outlet_asset_comes_from_connection_and_table():
    first = IndeedQuotaUsageOperator(task_id="a", sql_conn_id="warehouse", table="spend")
    second = IndeedQuotaUsageOperator(task_id="b", sql_conn_id="warehouse_eu", table="spend")
    assert first.outlets == [warehouse_table_asset("warehouse", "spend")]
    assert first.outlets[0].name == first.outlets[0].uri == "x-airflow-quota-warehouse://warehouse/spend"
    assert second.outlets[0].uri != first.outlets[0].uri and second.outlets[0].name != first.outlets[0].name
    assert IndeedQuotaUsageOperator(task_id="c").outlets == []


def test_non_sql_connection_is_refused(indeed_conn, sandbox, monkeypatch):
    set_connection(monkeypatch, "not_sql", conn_type="indeed", login="a", password="b")
    with pytest.raises(
        AirflowFailException, match=r"'not_sql' gives a IndeedHook, which is not a common\.sql DbApiHook"
    ):
        IndeedQuotaUsageOperator(task_id="extract", month="122024", sql_conn_id="not_sql").execute({})


# --------------------------------------------------------------------------- warehouse


def _rows(conn_id: str, table: str) -> list[tuple[Any, ...]]:
    return list(
        get_db_hook(conn_id).get_records(
            f"SELECT employer_id, month, month_start, api_quota, requests_count, spend_amount, currency_code "
            f"FROM {table} ORDER BY employer_id, month"
        )
    )


@pytest.fixture(params=WAREHOUSES)
def warehouse(request) -> tuple[str, str]:
    """(connection id, fresh table name) on each warehouse of WAREHOUSES."""
    conn_id = warehouse_conn_id(request)
    table = f"quota_usage_{uuid.uuid4().hex[:10]}"
    yield conn_id, table
    get_db_hook(conn_id).run(f"DROP TABLE IF EXISTS {table}")


def test_write_creates_the_table_and_stores_exact_money(indeed_conn, sandbox, warehouse):
    conn_id, table = warehouse
    result = IndeedQuotaUsageOperator(
        task_id="extract", employer_id="emp-precise-2", month="122024", sql_conn_id=conn_id, table=table
    ).execute({})
    [row] = _rows(conn_id, table)
    assert row[0:2] == ("emp-precise-2", "122024")
    assert str(row[2]) == "2024-12-01"
    assert (row[3], row[4]) == (result["api_quota"], result["requests_count"])
    assert Decimal(str(row[5])) == Decimal("1246.567890123456789012345")
    assert row[6] == "USD"


def test_rerun_updates_the_row_in_place(indeed_conn, sandbox, warehouse):
    conn_id, table = warehouse
    operator = IndeedQuotaUsageOperator(task_id="extract", month="012025", sql_conn_id=conn_id, table=table)
    operator.execute({})
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", patch={"sponsoredJobsSpendAmount": Decimal("42.42")})
    operator.execute({})
    rows = _rows(conn_id, table)
    assert len(rows) == 1
    assert Decimal(str(rows[0][5])) == Decimal("42.42")


def test_failed_write_leaves_the_previous_rows(indeed_conn, sandbox, warehouse):
    conn_id, table = warehouse
    months = ["122024", "012025"]
    IndeedQuotaUsageOperator(task_id="extract", month=months, sql_conn_id=conn_id, table=table).execute({})
    before = _rows(conn_id, table)
    remove_failure = fail_writes_of(conn_id, table, "012025")  # a real database error on the second row
    sandbox.add_fault(
        "patch", endpoint="indeed_quota_usage", count=2, patch={"sponsoredJobsSpendAmount": Decimal("99.99")}
    )
    with pytest.raises(Exception, match="injected database failure"):
        IndeedQuotaUsageOperator(task_id="extract", month=months, sql_conn_id=conn_id, table=table).execute({})
    assert _rows(conn_id, table) == before  # the first row of the failed write was rolled back too
    remove_failure()


def test_schema_qualified_table(indeed_conn, sandbox, warehouse):
    conn_id, table = warehouse
    hook = get_db_hook(conn_id)
    # MySQL's schema is a database: the connection's own
    schema = {"sqlite": "main", "postgresql": "public"}.get(hook.dialect_name) or hook.get_connection(conn_id).schema
    IndeedQuotaUsageOperator(task_id="extract", month="122024", sql_conn_id=conn_id, table=f"{schema}.{table}").execute(
        {}
    )
    assert len(_rows(conn_id, table)) == 1


def test_without_create_table_a_missing_table_is_an_error(indeed_conn, sandbox, warehouse):
    conn_id, table = warehouse
    with pytest.raises(Exception, match=table):
        IndeedQuotaUsageOperator(
            task_id="extract", month="122024", sql_conn_id=conn_id, table=table, create_table=False
        ).execute({})


def test_hook_params_are_plain_known_numbers():
    with pytest.raises(ValueError, match="client_secret: Extra inputs are not permitted"):
        IndeedQuotaUsageOperator(task_id="extract", hook_params={"client_secret": "x"})
    operator = IndeedQuotaUsageOperator(task_id="extract", hook_params={"read_timeout": 5, "max_attempts": 2})
    assert (operator.hook.settings.read_timeout, operator.hook.settings.max_attempts) == (5.0, 2)
