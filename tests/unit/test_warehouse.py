"""The warehouse write paths on real databases: native upsert, portable replace, refused warehouses."""

from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_quota import warehouse
from airflow_provider_quota.exceptions import ConnectionConfigError
from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator

NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)


def row(employer: str, month: str, spend: str) -> tuple[object, ...]:
    month_start = date(int(month[2:]), int(month[:2]), 1)
    return (employer, month, month_start, 3000, 12, Decimal(spend), "USD", NOW)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def table_on(request):
    """(hook, fresh table created with the dialect's DDL) on SQLite or the PostgreSQL test server."""
    hook = warehouse.get_db_hook(
        request.getfixturevalue("sqlite_conn" if request.param == "sqlite" else "postgres_conn")
    )
    table = f"quota_portable_{uuid.uuid4().hex[:10]}"
    hook.run(warehouse.create_table_sql(table, hook.dialect_name))
    yield hook, table
    hook.run(f"DROP TABLE IF EXISTS {table}")


def stored(hook, table) -> list[tuple[str, str, Decimal]]:
    return [
        (employer, month, Decimal(str(spend)))
        for employer, month, spend in hook.get_records(
            f"SELECT employer_id, month, spend_amount FROM {table} ORDER BY 1, 2"
        )
    ]


def test_portable_replace_is_idempotent_and_exact(table_on):
    hook, table = table_on
    warehouse.replace_in_one_transaction(hook, table, [row("e1", "122024", "1.5"), row("e1", "012025", "2")])
    warehouse.replace_in_one_transaction(hook, table, [row("e1", "122024", "1234.567890123456789")])
    assert stored(hook, table) == [("e1", "012025", Decimal(2)), ("e1", "122024", Decimal("1234.567890123456789"))]


def test_portable_replace_rolls_back_everything_on_a_database_error(table_on):
    hook, table = table_on
    warehouse.replace_in_one_transaction(hook, table, [row("e1", "122024", "1"), row("e1", "012025", "2")])
    before = stored(hook, table)
    broken = (*row("e1", "012025", "3")[:-1], None)  # extracted_at NOT NULL: the INSERT fails after the DELETEs
    with pytest.raises(Exception, match=r"(?i)null"):
        warehouse.replace_in_one_transaction(hook, table, [row("e1", "122024", "9"), broken])
    assert stored(hook, table) == before


@pytest.mark.postgres
def test_concurrent_portable_replaces_of_one_key_leave_one_row(postgres_conn):
    hook = warehouse.get_db_hook(postgres_conn)
    table = f"quota_portable_{uuid.uuid4().hex[:10]}"
    hook.run(warehouse.create_table_sql(table, "postgresql"))
    try:
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def write(spend: str) -> None:
            barrier.wait()
            try:
                warehouse.replace_in_one_transaction(
                    warehouse.get_db_hook(postgres_conn), table, [row("e1", "122024", spend)]
                )
            except BaseException as exc:  # a serialization failure is allowed; a duplicate is not
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(str(n),)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rows = stored(hook, table)
        assert len(rows) == 1
        assert len(errors) < 4
    finally:
        hook.run(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize("dialect", ["snowflake", "mssql", "oracle"])
def test_dialects_without_a_common_sql_upsert_use_the_portable_replace(sqlite_conn, monkeypatch, dialect):
    """The dialect decides the path; the rows land through SQLite itself."""
    hook = warehouse.get_db_hook(sqlite_conn)
    hook.__dict__["dialect_name"] = dialect
    monkeypatch.setattr(hook, "insert_rows", lambda *a, **k: pytest.fail("REPLACE INTO would fail on " + dialect))
    record = _usage("emp-acme", "122024", "10.25")
    assert warehouse.write_usage(hook, "usage", [record], extracted_at=NOW, create_table=True) == 1
    assert warehouse.write_usage(hook, "usage", [record], extracted_at=NOW, create_table=True) == 1
    assert stored(hook, "usage") == [("emp-acme", "122024", Decimal("10.25"))]


def _usage(employer: str, month: str, spend: str):
    from airflow_provider_quota.models import ApiQuotaUsage

    data = {
        "mmyyyy": month,
        "apiQuota": 1500,
        "sponsoredJobsSpendAmount": Decimal(spend),
        "currencyCode": "USD",
        "apiUsage": [],
    }
    return ApiQuotaUsage.from_api(data, employer_id=employer)


def test_bigquery_is_refused_with_the_alternative(sqlite_conn, monkeypatch):
    # No BigQuery server or provider here: a SQL hook that says it is BigQuery stands in for one.
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    monkeypatch.setattr(SqliteHook, "dialect_name", "bigquery")
    with pytest.raises(ConnectionConfigError, match=r"bigquery warehouse: .*impossible.*MERGE"):
        warehouse.get_db_hook(sqlite_conn)


def test_bigquery_connection_fails_the_task_before_any_api_request(indeed_conn, sqlite_conn, sandbox, monkeypatch):
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    monkeypatch.setattr(SqliteHook, "dialect_name", "bigquery")
    with pytest.raises(AirflowFailException, match="bigquery warehouse"):
        IndeedQuotaUsageOperator(task_id="extract", month="122024", sql_conn_id=sqlite_conn).execute({})
    assert sandbox.stats()["total_requests"] == 0


@pytest.mark.parametrize("dialect", ["mssql", "oracle"])
def test_a_warehouse_without_tested_ddl_must_have_its_table_already(
    indeed_conn, sqlite_conn, sandbox, monkeypatch, dialect
):
    """create_table=True is refused before any API request; with create_table=False the write goes on."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    monkeypatch.setattr(SqliteHook, "dialect_name", dialect)  # stands in for a server we do not run
    with pytest.raises(
        AirflowFailException, match=rf"{dialect} warehouse, for which this provider has no tested CREATE"
    ):
        IndeedQuotaUsageOperator(task_id="extract", month="122024", sql_conn_id=sqlite_conn).execute({})
    assert sandbox.stats()["total_requests"] == 0
    hook = warehouse.get_db_hook(sqlite_conn)
    hook.run(warehouse.create_table_sql("indeed_api_quota_usage", "sqlite"))  # the DBA's table
    IndeedQuotaUsageOperator(task_id="extract", month="122024", sql_conn_id=sqlite_conn, create_table=False).execute({})
    assert len(hook.get_records("SELECT * FROM indeed_api_quota_usage")) == 1  # through the portable DELETE + INSERT
