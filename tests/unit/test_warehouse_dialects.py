"""
The warehouse DDL and upsert per dialect, for the warehouses the suite cannot reach (Snowflake, BigQuery).

What docs/howto/monthly-spend-warehouse.md says about Snowflake and BigQuery rests on these
tests: the Snowflake DDL follows Snowflake's rules, the generic DDL breaks BigQuery's, and
common.sql sends the upsert of a dialect it has no class for as ``REPLACE INTO`` (hence the
portable write path tested in tests/unit/test_warehouse.py).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from airflow_provider_quota.exceptions import InvalidParameterError
from airflow_provider_quota.utils import warehouse
from tests.conftest import set_connection
from tests.docs.ddl_rules import (
    bigquery_ddl_problems,
    bigquery_type_problem,
    parse_create_table,
    snowflake_ddl_problems,
    snowflake_type_problem,
)

TABLE = "analytics.indeed_api_quota_usage"


def test_snowflake_ddl_follows_snowflakes_rules():
    sql = warehouse.create_table_sql(TABLE, "snowflake")
    table = parse_create_table(sql)
    assert table.name == TABLE
    assert tuple(table.columns) == warehouse.COLUMNS
    assert table.not_null == frozenset(warehouse.COLUMNS)
    assert table.primary_key == warehouse.PRIMARY_KEY
    assert snowflake_ddl_problems(sql) == []
    # Snowflake's bare NUMERIC is NUMBER(38, 0): money must carry an explicit scale.
    assert table.columns["spend_amount"] == "DECIMAL(38, 10)"


@pytest.mark.parametrize(("places", "accepted"), [(10, True), (11, False)])
def test_snowflake_money_column_keeps_ten_decimal_places_and_refuses_more(places, accepted):
    spend = Decimal("1." + "1" * places)
    if accepted:
        warehouse.check_money_fits(spend, "snowflake", TABLE)
    else:
        with pytest.raises(InvalidParameterError, match="more than 10 decimal places"):
            warehouse.check_money_fits(spend, "snowflake", TABLE)


@pytest.mark.parametrize(
    ("dialect", "spend", "problem"),
    [
        ("snowflake", "3000.100000000000", None),  # trailing zeros lose nothing
        ("snowflake", "0E-40", None),
        ("snowflake", "9" * 28 + ".5", None),
        ("snowflake", "1" + "0" * 28, "29 digits before the decimal point, more than 28"),
        ("snowflake", "1E+28", "29 digits before the decimal point, more than 28"),
        ("mysql", "0." + "1" * 30, None),
        # 34 significant digits: a check through Decimal.normalize() would round to 28 and let it by
        ("mysql", "0.1000000000000000055511151231257827", r"more than 30 decimal places.*DECIMAL\(65, 30\)"),
        ("mysql", "9" * 36, "36 digits before the decimal point, more than 35"),
        ("postgresql", "9" * 100 + "." + "1" * 100, None),
        ("sqlite", "9" * 100 + "." + "1" * 100, None),
    ],
)
def test_money_that_a_decimal_column_would_round_or_reject_is_refused_by_name(dialect, spend, problem):
    if problem is None:
        warehouse.check_money_fits(Decimal(spend), dialect, TABLE)
    else:
        with pytest.raises(InvalidParameterError, match=problem):
            warehouse.check_money_fits(Decimal(spend), dialect, TABLE)


def test_mysql_keeps_utc_wall_time_and_its_widest_decimal():
    types = warehouse.column_types("mysql")
    assert (types["extracted_at"], types["spend_amount"]) == ("DATETIME(6)", "DECIMAL(65, 30)")


def test_bigquery_has_no_ddl_of_its_own_and_the_generic_one_breaks_its_rules():
    assert warehouse.DIALECTS["bigquery"].types is None
    problems = bigquery_ddl_problems(warehouse.create_table_sql(TABLE, "bigquery"))
    assert problems == [
        "VARCHAR(256): not a BigQuery data type",
        "CHAR(6): not a BigQuery data type",
        "DECIMAL(38, 10): NUMERIC(P, S) needs 0 <= S <= 9 and max(1, S) <= P <= S + 29",
        "VARCHAR(256): not a BigQuery data type",
        "PRIMARY KEY without NOT ENFORCED",
    ]


def test_the_rules_accept_valid_ddl_of_each_warehouse():
    bigquery = (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (employer_id STRING NOT NULL, month STRING NOT NULL, "
        "month_start DATE NOT NULL, api_quota INT64 NOT NULL, requests_count INT64 NOT NULL, "
        "spend_amount BIGNUMERIC NOT NULL, currency_code STRING NOT NULL, extracted_at TIMESTAMP NOT NULL, "
        "PRIMARY KEY (employer_id, month) NOT ENFORCED)"
    )
    assert bigquery_ddl_problems(bigquery) == []
    assert snowflake_ddl_problems(bigquery.replace("INT64", "BIGINT").replace("BIGNUMERIC", "NUMBER(38, 12)")) == []


@pytest.mark.parametrize(
    ("sql_type", "snowflake_ok", "bigquery_ok"),
    [
        ("VARCHAR(256)", True, False),
        ("STRING", True, True),
        ("NUMERIC(38, 9)", True, True),
        ("NUMERIC(38, 10)", True, False),
        ("BIGNUMERIC(76, 38)", False, True),
        ("DECIMAL(39, 2)", False, False),
        ("NUMBER(10, 11)", False, False),
        ("INT64", False, True),
        ("BIGINT", True, True),
        ("TIMESTAMP", True, True),
        ("TIMESTAMP WITH TIME ZONE", False, False),
    ],
)
def test_the_type_rules_tell_valid_from_invalid(sql_type, snowflake_ok, bigquery_ok):
    assert (snowflake_type_problem(sql_type) is None) is snowflake_ok
    assert (bigquery_type_problem(sql_type) is None) is bigquery_ok


def test_malformed_statements_are_refused_by_the_parser():
    with pytest.raises(ValueError, match="not a CREATE TABLE"):
        parse_create_table("CREATE TABLE t (a INT)")
    with pytest.raises(ValueError, match="unknown columns"):
        parse_create_table("CREATE TABLE IF NOT EXISTS t (a INT, PRIMARY KEY (b))")


def _row() -> tuple[object, ...]:
    return ("emp-acme", "122024", date(2024, 12, 1), 3000, 12, Decimal("10.5"), "USD", datetime.now(timezone.utc))


@pytest.mark.parametrize(
    ("conn_type", "host", "dialect", "statement_start"),
    [
        ("sqlite", "{tmp}/w.db", "sqlite", "REPLACE INTO"),
        ("postgres", "127.0.0.1", "postgresql", "INSERT INTO"),
    ],
)
def test_upsert_statement_of_the_installed_dialects(monkeypatch, tmp_path, conn_type, host, dialect, statement_start):
    set_connection(monkeypatch, "wh", conn_type=conn_type, host=host.format(tmp=tmp_path), schema="test")
    hook = warehouse.get_db_hook("wh")
    assert hook.dialect_name == dialect
    sql = hook._generate_insert_sql(
        TABLE, _row(), list(warehouse.COLUMNS), replace=True, replace_index=list(warehouse.PRIMARY_KEY)
    )
    assert sql.startswith(statement_start)
    if dialect == "postgresql":
        assert "ON CONFLICT (employer_id, month) DO UPDATE SET" in sql


def test_upsert_of_a_dialect_without_a_common_sql_dialect_class_is_replace_into(monkeypatch):
    """
    What the operator sends through a hook whose dialect common.sql has no class for.

    The Snowflake provider registers no dialect (its provider info has no "dialects" entry),
    so a SnowflakeHook would get this statement, which Snowflake does not support: this is why
    ``write_usage`` uses ``update_or_insert`` where ``native_upsert`` is off.
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    class NoDialectClassHook(DbApiHook):
        conn_name_attr = "no_dialect_conn_id"
        default_conn_name = "no_dialect_default"

    set_connection(monkeypatch, "no_dialect_default", conn_type="generic")
    hook = NoDialectClassHook()
    hook.__dict__["dialect_name"] = "snowflake"
    assert "snowflake" not in DbApiHook._dialects
    sql = hook._generate_insert_sql(
        TABLE, _row(), list(warehouse.COLUMNS), replace=True, replace_index=list(warehouse.PRIMARY_KEY)
    )
    assert sql.startswith(f"REPLACE INTO {TABLE} (employer_id, month,")
