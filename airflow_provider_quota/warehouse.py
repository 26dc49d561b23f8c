"""
Writing Indeed usage records to a warehouse table through any common.sql connection.

One row per (employer_id, month), upserted in one transaction: a rerun updates the row in
place, a failure leaves the previous row untouched. Money keeps every digit: ``TEXT`` on
SQLite (a NUMERIC column would round it) and unconstrained ``NUMERIC`` on PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_quota.exceptions import ConnectionConfigError, InvalidParameterError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import Asset

    from airflow_provider_quota.models import ApiQuotaUsage

COLUMNS = (
    "employer_id",
    "month",
    "month_start",
    "api_quota",
    "requests_count",
    "spend_amount",
    "currency_code",
    "extracted_at",
)
PRIMARY_KEY = ("employer_id", "month")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Column types per SQLAlchemy dialect name; "default" serves MySQL, Snowflake and the rest.
_TYPES: dict[str, dict[str, str]] = {
    "sqlite": {"text": "TEXT", "month": "TEXT", "date": "TEXT", "count": "INTEGER", "money": "TEXT", "ts": "TEXT"},
    "postgresql": {
        "text": "VARCHAR(256)",
        "month": "CHAR(6)",
        "date": "DATE",
        "count": "BIGINT",
        "money": "NUMERIC",
        "ts": "TIMESTAMP WITH TIME ZONE",
    },
    "default": {
        "text": "VARCHAR(256)",
        "month": "CHAR(6)",
        "date": "DATE",
        "count": "BIGINT",
        "money": "DECIMAL(38, 10)",
        "ts": "TIMESTAMP",
    },
}
#: Decimal places a money column keeps, per dialect (None: every digit).
_MONEY_SCALE: dict[str, int | None] = {"sqlite": None, "postgresql": None, "default": 10}


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


def get_db_hook(sql_conn_id: str) -> DbApiHook:
    """
    Resolve a common.sql hook from a connection id.

    :raise ConnectionConfigError: when the connection's hook is not a DbApiHook.
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_hook(sql_conn_id)
    if not isinstance(hook, DbApiHook):
        raise ConnectionConfigError(
            f"Connection {sql_conn_id!r} gives a {type(hook).__name__}, which is not a common.sql "
            "DbApiHook; use a SQL connection (sqlite, postgres, mysql, snowflake...)"
        )
    return hook


def _types(dialect: str) -> dict[str, str]:
    return _TYPES.get(dialect, _TYPES["default"])


def create_table_sql(table: str, dialect: str) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement for ``table`` on ``dialect``."""
    types = _types(dialect)
    return (
        f"CREATE TABLE IF NOT EXISTS {validate_table_name(table)} ("
        f"employer_id {types['text']} NOT NULL, "
        f"month {types['month']} NOT NULL, "
        f"month_start {types['date']} NOT NULL, "
        f"api_quota {types['count']} NOT NULL, "
        f"requests_count {types['count']} NOT NULL, "
        f"spend_amount {types['money']} NOT NULL, "
        f"currency_code {types['text']} NOT NULL, "
        f"extracted_at {types['ts']} NOT NULL, "
        f"PRIMARY KEY ({', '.join(PRIMARY_KEY)}))"
    )


def _check_scale(spend: Decimal, dialect: str, table: str) -> None:
    scale = _MONEY_SCALE.get(dialect, _MONEY_SCALE["default"])
    exponent = spend.as_tuple().exponent
    if scale is not None and isinstance(exponent, int) and -exponent > scale:
        raise InvalidParameterError(
            f"spend {spend} has more than {scale} decimal places, which the {dialect} column "
            f"{table}.spend_amount would round; create the table with a wider DECIMAL yourself"
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
        _check_scale(record.spend_amount, dialect, table)
    if create_table:
        try:
            hook.run(create_table_sql(table, dialect))
        except Exception:
            # Concurrent first runs race: PostgreSQL lets two CREATE TABLE IF NOT EXISTS collide
            # (unique violation on pg_type). The winner has committed, so once more is a no-op;
            # any other error comes back the same way.
            hook.run(create_table_sql(table, dialect))
    rows = usage_rows(records, extracted_at)
    hook.insert_rows(
        table,
        rows,
        target_fields=list(COLUMNS),
        commit_every=max(len(rows), 1),  # one transaction for every row
        replace=True,
        replace_index=list(PRIMARY_KEY),
    )
    return len(rows)
