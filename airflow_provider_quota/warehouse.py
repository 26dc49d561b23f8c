"""
Writing Indeed usage records to a warehouse table through any common.sql connection.

One row per (employer_id, month), upserted in one transaction: a rerun updates the row in
place, a failure leaves the previous row untouched. Money keeps every digit: ``TEXT`` on
SQLite (a NUMERIC column would round it) and unconstrained ``NUMERIC`` on PostgreSQL.
"""

from __future__ import annotations

import re
from contextlib import closing
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_quota.exceptions import ConnectionConfigError, InvalidParameterError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import Asset

    from airflow_provider_quota.models import ApiQuotaUsage

#: The table's columns, in order, and the kind of value each holds (a key of ``_TYPES`` entries).
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

# Column types per SQLAlchemy dialect name; "default" serves Snowflake (the dialects of
# CREATE_TABLE_DIALECTS without types of their own).
_STANDARD_TYPES = {
    "text": "VARCHAR(256)",
    "month": "CHAR(6)",
    "date": "DATE",
    "count": "BIGINT",
    "money": "DECIMAL(38, 10)",
    "ts": "TIMESTAMP",
}
_TYPES: dict[str, dict[str, str]] = {
    "sqlite": {"text": "TEXT", "month": "TEXT", "date": "TEXT", "count": "INTEGER", "money": "TEXT", "ts": "TEXT"},
    "postgresql": {**_STANDARD_TYPES, "money": "NUMERIC", "ts": "TIMESTAMP WITH TIME ZONE"},
    # MySQL's widest DECIMAL; DATETIME keeps the UTC wall time as written, where TIMESTAMP would
    # shift it by the session's time zone (and ends in 2038).
    "mysql": {**_STANDARD_TYPES, "money": "DECIMAL(65, 30)", "ts": "DATETIME(6)"},
    "default": _STANDARD_TYPES,
}
#: (precision, scale) of the money column per dialect, None where it keeps every digit. A spend
#: that does not fit is refused before the write: a DECIMAL column would round or reject it.
_MONEY_DIGITS: dict[str, tuple[int, int] | None] = {
    "sqlite": None,
    "postgresql": None,
    "mysql": (65, 30),
    "default": (38, 10),
}

#: Dialects where common.sql's ``insert_rows(replace=True)`` is a real upsert on the primary key
#: (``INSERT ... ON CONFLICT DO UPDATE`` on PostgreSQL, ``REPLACE INTO`` on SQLite and MySQL).
#: Elsewhere (Snowflake, MSSQL, Oracle...) common.sql would send MySQL's ``REPLACE INTO``, so the
#: rows are written with a portable DELETE + INSERT in one DB-API transaction instead.
NATIVE_UPSERT_DIALECTS = frozenset({"sqlite", "postgresql", "mysql"})

#: Dialects whose CREATE TABLE the package writes and checks. Elsewhere (MSSQL has no
#: ``IF NOT EXISTS`` and reads TIMESTAMP as rowversion, Oracle has no BIGINT...) the table must
#: exist already: ``create_table=True`` is refused before any API request.
CREATE_TABLE_DIALECTS = frozenset({"sqlite", "postgresql", "mysql", "snowflake"})

#: Warehouses whose common.sql hook cannot write these rows atomically, and what to do instead.
UNSUPPORTED_DIALECTS = {
    "bigquery": (
        "BigQueryHook implements no insert_rows and its DB-API connection has no transactions, so "
        "an atomic upsert through common.sql is impossible; leave sql_conn_id unset and load the "
        "task's XCom records with a MERGE (see docs/howto/monthly-spend-warehouse.md)"
    ),
}


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
            f"table {table!r} is not an SQL identifier: use 'table' or 'schema.table' made of letters, "
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
    :param create_table: whether the table will be created when missing (checked against
        :data:`CREATE_TABLE_DIALECTS`).
    :raise ConnectionConfigError: when the connection's hook is not a DbApiHook, is one this
        module cannot write to atomically (BigQuery), or cannot create the table for.
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_hook(sql_conn_id)
    if not isinstance(hook, DbApiHook):
        raise ConnectionConfigError(
            f"Connection {sql_conn_id!r} gives a {type(hook).__name__}, which is not a common.sql "
            "DbApiHook; use a SQL connection (sqlite, postgres, mysql, snowflake...)"
        )
    if hook.dialect_name in UNSUPPORTED_DIALECTS:
        raise ConnectionConfigError(
            f"Connection {sql_conn_id!r} is a {hook.dialect_name} warehouse: {UNSUPPORTED_DIALECTS[hook.dialect_name]}"
        )
    if create_table and hook.dialect_name not in CREATE_TABLE_DIALECTS:
        raise ConnectionConfigError(
            f"Connection {sql_conn_id!r} is a {hook.dialect_name} warehouse, for which this provider has no "
            f"tested CREATE TABLE (it has for {', '.join(sorted(CREATE_TABLE_DIALECTS))}): create the table "
            f"yourself with the columns {', '.join(COLUMNS)} and primary key ({', '.join(PRIMARY_KEY)}), "
            "then set create_table=False"
        )
    return hook


def column_types(dialect: str) -> dict[str, str]:
    """The SQL type of each column on ``dialect`` (the ``default`` types for dialects not listed)."""
    types = _TYPES.get(dialect, _TYPES["default"])
    return {column: types[kind] for column, kind in COLUMN_KINDS.items()}


def create_table_sql(table: str, dialect: str) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement for ``table`` on ``dialect``."""
    columns = ", ".join(f"{column} {sql_type} NOT NULL" for column, sql_type in column_types(dialect).items())
    return (
        f"CREATE TABLE IF NOT EXISTS {validate_table_name(table)} ({columns}, PRIMARY KEY ({', '.join(PRIMARY_KEY)}))"
    )


def check_money_fits(spend: Decimal, dialect: str, table: str) -> None:
    """
    Refuse a spend the money column of ``dialect`` cannot hold exactly.

    :raise InvalidParameterError: naming the spend, the column and what does not fit.
    """
    digits = _MONEY_DIGITS.get(dialect, _MONEY_DIGITS["default"])
    _, digit_tuple, exponent = spend.as_tuple()
    if digits is None or not spend or not isinstance(exponent, int):  # fits, or not a finite number
        return
    # Trailing zeros are no loss when the column pads or drops them: 3000.100000000000 fits (38, 10).
    # (Not Decimal.normalize(): it rounds to the context's 28 digits.)
    while exponent < 0 and digit_tuple[-1] == 0:
        digit_tuple, exponent = digit_tuple[:-1], exponent + 1
    precision, scale = digits
    places = max(-exponent, 0)
    whole_digits = max(len(digit_tuple) + exponent, 0)
    column = f"the {dialect} column {table}.spend_amount, DECIMAL({precision}, {scale}),"
    if places > scale:
        raise InvalidParameterError(
            f"spend {spend} has more than {scale} decimal places, which {column} would round; "
            "create the table with a wider DECIMAL yourself"
        )
    if whole_digits > precision - scale:
        raise InvalidParameterError(
            f"spend {spend} has {whole_digits} digits before the decimal point, more than "
            f"{precision - scale} that {column} holds; create the table with a wider DECIMAL yourself"
        )


def usage_rows(records: list[ApiQuotaUsage], extracted_at: datetime) -> list[tuple[Any, ...]]:
    """The rows of ``records``, in :data:`COLUMNS` order; money stays a Decimal."""
    return [
        (
            record.employer_id,
            record.month,
            record.month_start,
            record.api_quota,
            record.requests_count,
            record.spend_amount,
            record.currency_code,
            extracted_at,
        )
        for record in records
    ]


def write_usage(
    hook: DbApiHook, table: str, records: list[ApiQuotaUsage], *, extracted_at: datetime, create_table: bool
) -> int:
    """
    Upsert ``records`` into ``table`` in one transaction.

    :param hook: the warehouse hook.
    :param table: a validated table name.
    :param records: the usage records, each with an employer id.
    :param extracted_at: when the records were read from the API (UTC).
    :param create_table: create the table first when it does not exist.
    :return: the number of rows written.
    """
    validate_table_name(table)
    dialect = hook.dialect_name
    for record in records:
        if not record.employer_id:
            raise InvalidParameterError("a usage record without employer_id cannot be written to the warehouse")
        check_money_fits(record.spend_amount, dialect, table)
    if create_table:
        try:
            hook.run(create_table_sql(table, dialect))
        except Exception:
            # Concurrent first runs race: PostgreSQL lets two CREATE TABLE IF NOT EXISTS collide
            # (unique violation on pg_type). The winner has committed, so once more is a no-op;
            # any other error comes back the same way.
            hook.run(create_table_sql(table, dialect))
    rows = usage_rows(records, extracted_at)
    if dialect == "sqlite":  # a TEXT column: the exact digits, in plain notation
        rows = [tuple(_portable_cell(cell) if isinstance(cell, Decimal) else cell for cell in row) for row in rows]
    if dialect in NATIVE_UPSERT_DIALECTS:
        hook.insert_rows(
            table,
            rows,
            target_fields=list(COLUMNS),
            commit_every=max(len(rows), 1),  # one transaction for every row
            replace=True,
            replace_index=list(PRIMARY_KEY),
        )
    else:
        replace_in_one_transaction(hook, table, rows)
    return len(rows)


def _portable_cell(value: Any) -> Any:
    # Exact text for money, ISO text for dates: every driver binds it and every database casts it.
    if isinstance(value, Decimal):
        from airflow_provider_quota.models import plain_decimal

        return plain_decimal(value)
    if isinstance(value, date):  # datetime included
        return value.isoformat()
    return value


def replace_in_one_transaction(hook: DbApiHook, table: str, rows: list[tuple[Any, ...]]) -> None:
    """
    Replace the rows with the same (employer_id, month) by ``rows``: DELETE then INSERT, one transaction.

    Plain DB-API and standard SQL, for warehouses where common.sql has no upsert: a failure rolls
    everything back, and concurrent writers of the same key serialize on the key's row lock.

    :param hook: the warehouse hook.
    :param table: a validated table name.
    :param rows: rows in :data:`COLUMNS` order.
    """
    placeholder = hook.placeholder
    delete = (
        f"DELETE FROM {validate_table_name(table)} "  # noqa: S608 (validated identifier, bound values)
        f"WHERE employer_id = {placeholder} AND month = {placeholder}"
    )
    insert = (
        f"INSERT INTO {table} ({', '.join(COLUMNS)}) "  # noqa: S608 (validated identifier, bound values)
        f"VALUES ({', '.join([placeholder] * len(COLUMNS))})"
    )
    with closing(hook.get_conn()) as conn:
        if hook.supports_autocommit:
            hook.set_autocommit(conn, False)
        with closing(conn.cursor()) as cursor:
            try:
                for row in rows:
                    cursor.execute(delete, (row[0], row[1]))
                cursor.executemany(insert, [tuple(_portable_cell(cell) for cell in row) for row in rows])
            except BaseException:
                conn.rollback()
                raise
        conn.commit()
