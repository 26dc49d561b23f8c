"""The warehouse write paths on real databases: native upsert, update-or-insert, refused warehouses."""

from __future__ import annotations

import threading
import uuid
from contextlib import closing
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_quota.exceptions import ConnectionConfigError
from airflow_provider_quota.models import ApiQuotaUsage, ApiQuotaUsageData
from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.utils import warehouse
from tests.conftest import fail_writes_of

NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)


def usage(employer: str, month: str, spend: str) -> ApiQuotaUsage:
    data = {"mmyyyy": month, "apiQuota": 1500, "sponsoredJobsSpendAmount": Decimal(spend), "currencyCode": "USD"}
    return ApiQuotaUsage.from_api(ApiQuotaUsageData.model_validate({**data, "apiUsage": []}), employer_id=employer)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def table_on(request):
    """(hook, fresh table created with the dialect's DDL) on SQLite or the PostgreSQL test server."""
    hook = warehouse.get_db_hook(request.getfixturevalue(f"{request.param}_conn"))
    table = f"quota_portable_{uuid.uuid4().hex[:10]}"
    hook.run(warehouse.create_table_sql(table, hook.dialect_name))
    yield hook, table
    hook.run(f"DROP TABLE IF EXISTS {table}")


def stored(hook, table) -> list[tuple[str, str, Decimal]]:
    records = hook.get_records(f"SELECT employer_id, month, spend_amount FROM {table} ORDER BY 1, 2")
    return [(employer, month, Decimal(str(spend))) for employer, month, spend in records]


def portable(hook, table, *records: ApiQuotaUsage) -> None:
    warehouse.update_or_insert(hook, table, warehouse.usage_rows(list(records), NOW, as_text=True))


def test_update_or_insert_is_idempotent_and_exact(table_on):
    hook, table = table_on
    portable(hook, table, usage("e1", "122024", "1.5"), usage("e1", "012025", "2"))
    portable(hook, table, usage("e1", "122024", "1234.567890123456789"))
    assert stored(hook, table) == [("e1", "012025", Decimal(2)), ("e1", "122024", Decimal("1234.567890123456789"))]


def test_update_or_insert_rolls_back_everything_on_a_database_error(table_on):
    hook, table = table_on
    portable(hook, table, usage("e1", "122024", "1"), usage("e1", "012025", "2"))
    before = stored(hook, table)
    remove_failure = fail_writes_of(hook.get_conn_id(), table, "012025")
    with pytest.raises(Exception, match="injected database failure"):
        portable(hook, table, usage("e1", "122024", "9"), usage("e1", "012025", "3"))
    remove_failure()
    assert stored(hook, table) == before


def test_a_warehouse_that_commits_every_statement_never_loses_the_previous_row(table_on):
    """
    Trino connects in autocommit mode and says nothing, Databricks has no transactions: the write
    path must not depend on a rollback. Here a real connection in autocommit mode, behind a hook
    that reports no autocommit support, meets a failing write of a row that exists.
    """
    hook, table = table_on
    portable(hook, table, usage("e1", "122024", "1"), usage("e1", "012025", "2"))
    connect, dialect = hook.get_conn, hook.dialect_name

    def autocommitting():
        conn = connect()
        if dialect == "sqlite":
            conn.isolation_level = None  # sqlite3's autocommit
        else:
            conn.autocommit = True
        return conn

    hook.get_conn = autocommitting
    hook.supports_autocommit = False
    hook.__dict__["dialect_name"] = "trino"
    remove_failure = fail_writes_of(hook.get_conn_id(), table, "012025")
    with pytest.raises(Exception, match="injected database failure"):
        portable(hook, table, usage("e1", "012025", "3"))
    remove_failure()
    assert stored(hook, table) == [("e1", "012025", Decimal(2)), ("e1", "122024", Decimal(1))]


@pytest.mark.postgres
def test_runs_listing_months_in_different_orders_do_not_deadlock(postgres_conn):
    """Two runs of one employer write the same months at the same time, one listing them backwards."""
    hook = warehouse.get_db_hook(postgres_conn)
    table = f"quota_order_{uuid.uuid4().hex[:10]}"
    hook.run(warehouse.create_table_sql(table, "postgresql"))
    # Each row write takes a moment, so that the two transactions interleave row by row.
    hook.run(
        f"CREATE FUNCTION {table}_slow() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$ "
        f"LANGUAGE plpgsql; CREATE TRIGGER {table}_slow BEFORE INSERT OR UPDATE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_slow()"
    )
    months = ["122024", "012025", "022025"]
    errors: list[BaseException] = []
    together = threading.Barrier(2)

    def write(order: list[str]) -> None:
        together.wait()
        try:
            records = [usage("e1", month, "1") for month in order]
            warehouse.write_usage(
                warehouse.get_db_hook(postgres_conn), table, records, extracted_at=NOW, create_table=False
            )
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=write, args=(order,)) for order in (months, months[::-1])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(stored(hook, table)) == 3
    finally:
        hook.run(f"DROP TABLE IF EXISTS {table}; DROP FUNCTION IF EXISTS {table}_slow()")


@pytest.mark.postgres
def test_concurrent_portable_writes_of_one_key_leave_one_row(postgres_conn):
    hook = warehouse.get_db_hook(postgres_conn)
    table = f"quota_portable_{uuid.uuid4().hex[:10]}"
    hook.run(warehouse.create_table_sql(table, "postgresql"))
    try:
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def write(spend: str) -> None:
            barrier.wait()
            try:
                portable(warehouse.get_db_hook(postgres_conn), table, usage("e1", "122024", spend))
            except BaseException as exc:  # a unique violation is allowed; a duplicate is not
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(str(n),)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(stored(hook, table)) == 1
        assert len(errors) < 4
    finally:
        hook.run(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize("dialect", ["snowflake", "mssql", "oracle", "trino"])
def test_dialects_without_a_common_sql_upsert_update_or_insert(sqlite_conn, monkeypatch, dialect):
    """The dialect decides the path; the rows land through SQLite itself."""
    hook = warehouse.get_db_hook(sqlite_conn)
    hook.__dict__["dialect_name"] = dialect
    monkeypatch.setattr(hook, "insert_rows", lambda *a, **k: pytest.fail("REPLACE INTO would fail on " + dialect))
    hook.run(warehouse.create_table_sql("usage", "sqlite"))
    record = usage("emp-acme", "122024", "10.25")
    assert warehouse.write_usage(hook, "usage", [record], extracted_at=NOW, create_table=False) == 1
    assert warehouse.write_usage(hook, "usage", [record], extracted_at=NOW, create_table=False) == 1
    assert stored(hook, "usage") == [("emp-acme", "122024", Decimal("10.25"))]


@pytest.mark.mysql
@pytest.mark.parametrize("client", ["mysqlclient", "mysql-connector-python"])
def test_money_is_exact_with_every_mysql_driver(mysql_conn, monkeypatch, client):
    """mysql-connector-python bound a Decimal in exponent form as a DOUBLE: money is bound as text now."""
    from tests.conftest import MYSQL_URL, server_connection_fields, set_connection

    set_connection(monkeypatch, "wh_client", **server_connection_fields(MYSQL_URL), extra={"client": client})
    hook = warehouse.get_db_hook("wh_client")
    table = f"quota_money_{uuid.uuid4().hex[:10]}"
    spend = "1.23456789012345678905E+22"
    try:
        warehouse.write_usage(hook, table, [usage("e1", "122024", spend)], extracted_at=NOW, create_table=True)
        assert stored(hook, table) == [("e1", "122024", Decimal(spend))]
    finally:
        hook.run(f"DROP TABLE IF EXISTS {table}")


def test_bigquery_is_refused_with_the_alternative(sqlite_conn, monkeypatch):
    # No BigQuery server or provider here: a SQL hook that says it is BigQuery stands in for one.
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    monkeypatch.setattr(SqliteHook, "dialect_name", "bigquery")
    with pytest.raises(ConnectionConfigError, match=r"bigquery warehouse: .*cannot be upserted.*MERGE"):
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
    with closing(hook.get_conn()) as conn:
        assert len(conn.execute("SELECT * FROM indeed_api_quota_usage").fetchall()) == 1
