"""
Writing Indeed usage records to a warehouse table through any common.sql connection.

One row per (employer_id, month). Each SQL dialect is one :class:`WarehouseDialect` record in
:data:`DIALECTS`: its column types (when the provider may create the table), the digits of its
money column, and how rows are written. Where common.sql's ``insert_rows(replace=True)`` is a
real upsert on the primary key (SQLite, PostgreSQL, MySQL), it writes them in one transaction.
Elsewhere each row is updated in place, or inserted when it is missing: no row is ever deleted,
so even a warehouse that commits every statement (Trino, Databricks...) never loses the previous
row when a write fails. Rows are always written in one order, (employer_id, month), so two runs
cannot deadlock. Money is bound as exact text in plain notation, which every driver and
database reads digit for digit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_quota.exceptions import ConnectionConfigError, InvalidParameterError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import Asset

    from airflow_provider_quota.models import ApiQuotaUsage

#: The table's columns, in order, and the kind of value each holds (a key of the dialects' types).
COLUMN_KINDS = {
    "employer_id": "text",
    "month": "month",
    "month_start": "date",
    "api_quota": "count",
    "requests_count": "count",
    "spend_amount": "money",
    "currency_code": "text",
    "extracted_at": "ts",
}
COLUMNS = tuple(COLUMN_KINDS)
PRIMARY_KEY = ("employer_id", "month")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class WarehouseDialect:
    """
    How the usage table is written on one SQL dialect.

    :param types: SQL type per column kind, for ``CREATE TABLE``; None when the provider has no
        tested DDL for the dialect (the table must exist).
    :param money_digits: (precision, scale) of the money column, None when it keeps every digit;
        a spend that does not fit is refused before the write.
    :param native_upsert: whether common.sql's ``insert_rows(replace=True)`` is a real upsert on
        the primary key for this dialect.
    :param refused: why rows cannot be written through this dialect at all, and what to do instead.
    """

    types: Mapping[str, str] | None = None
    money_digits: tuple[int, int] | None = (38, 10)
    native_upsert: bool = False
    refused: str | None = None


_STANDARD_TYPES = {
    "text": "VARCHAR(256)",
    "month": "CHAR(6)",
    "date": "DATE",
    "count": "BIGINT",
    "money": "DECIMAL(38, 10)",
    "ts": "TIMESTAMP",
}

#: Every dialect the provider knows; any other gets :data:`OTHER_DIALECT`.
DIALECTS: dict[str, WarehouseDialect] = {
    # TEXT keeps money exact (a NUMERIC column would round it); common.sql sends REPLACE INTO.
    "sqlite": WarehouseDialect(
        types={"text": "TEXT", "month": "TEXT", "date": "TEXT", "count": "INTEGER", "money": "TEXT", "ts": "TEXT"},
        money_digits=None,
        native_upsert=True,
    ),
    # Unconstrained NUMERIC keeps every digit; common.sql's PostgresDialect sends ON CONFLICT DO UPDATE.
    "postgresql": WarehouseDialect(
        types={**_STANDARD_TYPES, "money": "NUMERIC", "ts": "TIMESTAMP WITH TIME ZONE"},
        money_digits=None,
        native_upsert=True,
    ),
    # MySQL's widest DECIMAL; DATETIME keeps the UTC wall time as written, where TIMESTAMP would
    # shift it by the session's time zone (and ends in 2038). REPLACE INTO is MySQL's own.
    "mysql": WarehouseDialect(
        types={**_STANDARD_TYPES, "money": "DECIMAL(65, 30)", "ts": "DATETIME(6)"},
        money_digits=(65, 30),
        native_upsert=True,
    ),
    # common.sql would send MySQL's REPLACE INTO, which Snowflake does not know.
    "snowflake": WarehouseDialect(types=_STANDARD_TYPES),
    "bigquery": WarehouseDialect(
        refused="BigQueryHook implements no insert_rows and its DB-API connection has no transactions, so "
        "rows cannot be upserted through common.sql; leave sql_conn_id unset and load the "
        "task's XCom records with a MERGE (see docs/howto/monthly-spend-warehouse.md)"
    ),
}
#: MSSQL (no ``IF NOT EXISTS``, TIMESTAMP means rowversion), Oracle (no BIGINT), Trino, Databricks...:
#: the table must exist; rows are updated or inserted one by one.
OTHER_DIALECT = WarehouseDialect()


def dialect_of(name: str) -> WarehouseDialect:
    """The record of a SQL dialect (by SQLAlchemy name, as ``DbApiHook.dialect_name`` gives it)."""
    return DIALECTS.get(name, OTHER_DIALECT)


def validate_table_name(table: object) -> str:
    """
    Accept ``table`` or ``schema.table`` made of SQL identifiers (letters, digits, ``_``).

    :raise InvalidParameterError: for anything else (quotes, spaces, ``;``, more dots...).
    """
    if not isinstance(table, str):
        raise InvalidParameterError(f"table must be a string, not {type(table).__name__}")
    parts = table.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise InvalidParameterError(
            f"table {table!r:.100} is not an SQL identifier: use 'table' or 'schema.table' made of letters, "
            "digits and underscores (at most 63 each), starting with a letter or underscore"
        )
    return table


def warehouse_table_asset(sql_conn_id: str, table: str) -> Asset:
    """
    The Asset of a warehouse table written by :class:`IndeedQuotaUsageOperator`.

    Its name and URI both derive from the connection id and the table, so two DAGs writing the
    same table through the same connection share one Asset. Schedule a DAG on fresh spend data
    with ``schedule=[warehouse_table_asset("warehouse", "indeed_api_quota_usage")]``.

    :param sql_conn_id: the common.sql connection id.
    :param table: the table name.
    """
    from airflow.sdk import Asset

    uri = f"x-airflow-quota-warehouse://{quote(sql_conn_id, safe='')}/{table}"
    return Asset(name=uri, uri=uri, group="indeed-quota-usage")


def get_db_hook(sql_conn_id: str, *, create_table: bool = False) -> DbApiHook:
    """
    Resolve a common.sql hook from a connection id, checking that the rows can be written through it.

    :param sql_conn_id: the connection id.
    :param create_table: whether the table will be created when missing.
    :raise ConnectionConfigError: when the connection's hook is not a DbApiHook, is one rows cannot
        be written through (BigQuery), or one the provider cannot create the table for.
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_hook(sql_conn_id)
    if not isinstance(hook, DbApiHook):
        raise ConnectionConfigError(
            f"Connection {sql_conn_id!r} gives a {type(hook).__name__}, which is not a common.sql "
            "DbApiHook; use a SQL connection (sqlite, postgres, mysql, snowflake...)"
        )
    dialect = dialect_of(hook.dialect_name)
    if dialect.refused:
        raise ConnectionConfigError(f"Connection {sql_conn_id!r} is a {hook.dialect_name} warehouse: {dialect.refused}")
    if create_table and dialect.types is None:
        creatable = sorted(name for name, known in DIALECTS.items() if known.types)
        raise ConnectionConfigError(
            f"Connection {sql_conn_id!r} is a {hook.dialect_name} warehouse, for which this provider has no "
            f"tested CREATE TABLE (it has for {', '.join(creatable)}): create the table "
            f"yourself with the columns {', '.join(COLUMNS)} and primary key ({', '.join(PRIMARY_KEY)}), "
            "then set create_table=False"
        )
    return hook


def column_types(dialect: str) -> dict[str, str]:
    """The SQL type of each column on ``dialect`` (the standard types where it has none of its own)."""
    types = dialect_of(dialect).types or _STANDARD_TYPES
    return {column: types[kind] for column, kind in COLUMN_KINDS.items()}


def create_table_sql(table: str, dialect: str) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement for ``table`` on ``dialect``."""
    columns = ", ".join(f"{column} {sql_type} NOT NULL" for column, sql_type in column_types(dialect).items())
    return (
        f"CREATE TABLE IF NOT EXISTS {validate_table_name(table)} ({columns}, PRIMARY KEY ({', '.join(PRIMARY_KEY)}))"
    )


def check_money_fits(spend: Any, dialect: str, table: str) -> None:
    """
    Refuse a spend the money column of ``dialect`` cannot hold exactly.

    :raise InvalidParameterError: naming the spend, the column and what does not fit.
    """
    from airflow_provider_quota.utils.limits import decimal_overflow

    digits = dialect_of(dialect).money_digits
    if digits is None:
        return
    precision, scale = digits
    problem = decimal_overflow(spend, integer_digits=precision - scale, places=scale)
    if problem:
        raise InvalidParameterError(
            f"spend {spend} {problem} that the {dialect} column {table}.spend_amount, DECIMAL({precision}, {scale}), "
            "holds; create the table with a wider DECIMAL yourself"
        )


def usage_rows(records: list[ApiQuotaUsage], extracted_at: datetime, *, as_text: bool) -> list[tuple[Any, ...]]:
    """
    The rows of ``records`` in :data:`COLUMNS` order, sorted by primary key (one lock order for every writer).

    Money is exact text in plain notation; with ``as_text``, dates too (ISO 8601).
    """
    from airflow_provider_quota.models import plain_decimal

    def cell(value: Any) -> Any:
        return value.isoformat() if as_text and isinstance(value, date) else value

    rows = {
        (record.employer_id, record.month): (
            record.employer_id,
            record.month,
            cell(record.month_start),
            record.api_quota,
            record.requests_count,
            plain_decimal(record.spend_amount),
            record.currency_code,
            cell(extracted_at),
        )
        for record in records
    }
    return [rows[key] for key in sorted(rows)]


def write_usage(
    hook: DbApiHook, table: str, records: list[ApiQuotaUsage], *, extracted_at: datetime, create_table: bool
) -> int:
    """
    Upsert ``records`` into ``table``: one row per (employer_id, month).

    :param hook: the warehouse hook.
    :param table: a validated table name.
    :param records: the usage records, each with an employer id.
    :param extracted_at: when the records were read from the API (UTC).
    :param create_table: create the table first when it does not exist.
    :return: the number of rows written.
    """
    validate_table_name(table)
    dialect = dialect_of(hook.dialect_name)
    for record in records:
        if not record.employer_id:
            raise InvalidParameterError("a usage record without employer_id cannot be written to the warehouse")
        check_money_fits(record.spend_amount, hook.dialect_name, table)
    if create_table:
        try:
            hook.run(create_table_sql(table, hook.dialect_name))
        except Exception:
            # Concurrent first runs race: PostgreSQL lets two CREATE TABLE IF NOT EXISTS collide
            # (unique violation on pg_type). The winner has committed, so once more is a no-op;
            # any other error comes back the same way.
            hook.run(create_table_sql(table, hook.dialect_name))
    # Dates as ISO text where the column is TEXT (SQLite) or the SQL is the portable kind.
    rows = usage_rows(records, extracted_at, as_text=hook.dialect_name == "sqlite" or not dialect.native_upsert)
    if dialect.native_upsert:
        hook.insert_rows(
            table,
            rows,
            target_fields=list(COLUMNS),
            commit_every=max(len(rows), 1),  # one transaction for every row
            replace=True,
            replace_index=list(PRIMARY_KEY),
        )
    else:
        update_or_insert(hook, table, rows)
    return len(rows)


def update_or_insert(hook: DbApiHook, table: str, rows: list[tuple[Any, ...]]) -> None:
    """
    Write ``rows`` with standard SQL only: UPDATE each existing (employer_id, month), INSERT the missing ones.

    Nothing is ever deleted, so a failed statement can never lose a previous row, even on a
    connection that commits every statement. Where the hook can turn autocommit off, every row
    is written in one transaction.

    :param hook: the warehouse hook.
    :param table: a validated table name.
    :param rows: rows in :data:`COLUMNS` order, sorted by primary key.
    """
    mark = hook.placeholder
    key = f"employer_id = {mark} AND month = {mark}"
    table = validate_table_name(table)
    exists = f"SELECT 1 FROM {table} WHERE {key}"  # noqa: S608 (validated identifier, bound values)
    update = f"UPDATE {table} SET {', '.join(f'{c} = {mark}' for c in COLUMNS[2:])} WHERE {key}"  # noqa: S608
    insert = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join([mark] * len(COLUMNS))})"  # noqa: S608
    with closing(hook.get_conn()) as conn:
        if hook.supports_autocommit:
            hook.set_autocommit(conn, False)
        with closing(conn.cursor()) as cursor:
            try:
                for row in rows:
                    cursor.execute(exists, row[:2])
                    if cursor.fetchone() is None:
                        cursor.execute(insert, row)
                    else:
                        cursor.execute(update, (*row[2:], *row[:2]))
            except BaseException:
                conn.rollback()
                raise
        conn.commit()
