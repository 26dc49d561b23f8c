"""
Offline checks of ``CREATE TABLE`` statements against the documented rules of Snowflake and BigQuery.

Neither warehouse can be reached from the test suite, so the statements produced by
:func:`airflow_provider_quota.warehouse.create_table_sql` are checked against the type and
constraint rules of each vendor's SQL reference instead:

- Snowflake: https://docs.snowflake.com/en/sql-reference/sql/create-table and
  https://docs.snowflake.com/en/sql-reference/intro-summary-data-types (``NUMBER(p, s)``:
  1 <= p <= 38, 0 <= s <= p; ``VARCHAR(n)``: n <= 16 777 216 characters; constraints such as
  ``PRIMARY KEY`` are accepted and not enforced).
- BigQuery (GoogleSQL): https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types
  and .../data-definition-language (``NUMERIC(P, S)``: 0 <= S <= 9, max(1, S) <= P <= S + 29;
  ``BIGNUMERIC(P, S)``: 0 <= S <= 38, max(1, S) <= P <= S + 38; no ``VARCHAR`` or ``CHAR``;
  ``PRIMARY KEY (...)`` must be followed by ``NOT ENFORCED``; the table is ``dataset.table``).

This is a structural and type check, not a server: it says nothing about permissions,
quoting of reserved words beyond our column names, or runtime behaviour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CREATE = re.compile(
    r"^\s*CREATE TABLE IF NOT EXISTS (?P<table>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*"
    r"\((?P<body>.*)\)\s*;?\s*$",
    re.DOTALL | re.IGNORECASE,
)
_COLUMN = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<type>.+?)(?P<not_null>\s+NOT NULL)?$", re.IGNORECASE)
_PRIMARY_KEY = re.compile(
    r"^PRIMARY KEY\s*\((?P<columns>[^)]*)\)(?P<not_enforced>\s+NOT ENFORCED)?$",
    re.IGNORECASE,
)
_TYPE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_ ]*?)\s*(?:\((?P<args>[^)]*)\))?$")


@dataclass(frozen=True)
class Table:
    """A parsed ``CREATE TABLE IF NOT EXISTS`` statement."""

    name: str
    columns: dict[str, str]
    not_null: frozenset[str]
    primary_key: tuple[str, ...]
    primary_key_not_enforced: bool


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in body:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced parentheses")
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError("unbalanced parentheses")
    parts.append("".join(current).strip())
    return parts


def parse_create_table(sql: str) -> Table:
    """
    Parse the statement shape ``create_table_sql`` produces.

    :raise ValueError: when the statement does not have that shape.
    """
    match = _CREATE.match(sql)
    if match is None:
        raise ValueError(f"not a CREATE TABLE IF NOT EXISTS statement: {sql!r}")
    columns: dict[str, str] = {}
    not_null: set[str] = set()
    primary_key: tuple[str, ...] = ()
    not_enforced = False
    for element in _split_top_level(match["body"]):
        element = " ".join(element.split())
        if pk := _PRIMARY_KEY.match(element):
            primary_key = tuple(column.strip() for column in pk["columns"].split(","))
            not_enforced = pk["not_enforced"] is not None
            continue
        column = _COLUMN.match(element)
        if column is None:
            raise ValueError(f"cannot read column definition {element!r}")
        if column["name"] in columns:
            raise ValueError(f"column {column['name']} is defined twice")
        columns[column["name"]] = column["type"].strip()
        if column["not_null"]:
            not_null.add(column["name"])
    missing = [name for name in primary_key if name not in columns]
    if missing:
        raise ValueError(f"primary key names unknown columns {missing}")
    return Table(match["table"], columns, frozenset(not_null), primary_key, not_enforced)


def _type_args(sql_type: str) -> tuple[str, list[int]]:
    match = _TYPE.match(sql_type.strip())
    if match is None:
        raise ValueError(f"cannot read type {sql_type!r}")
    args = [int(arg) for arg in match["args"].split(",")] if match["args"] else []
    return match["name"].upper().strip(), args


def _precision_scale(args: list[int], *, default_precision: int) -> tuple[int, int]:
    """``(p)`` means scale 0; no arguments mean the default precision."""
    return (args[0] if args else default_precision), (args[1] if len(args) > 1 else 0)


_SNOWFLAKE_NUMBERS = {"NUMBER", "DECIMAL", "NUMERIC", "DEC"}
_SNOWFLAKE_INTEGERS = {"INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT"}
_SNOWFLAKE_TEXT = {"VARCHAR", "CHAR", "CHARACTER", "STRING", "TEXT", "NCHAR", "NVARCHAR"}
_SNOWFLAKE_TIMES = {"DATE", "TIMESTAMP", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMP_TZ", "DATETIME"}


def snowflake_type_problem(sql_type: str) -> str | None:
    """Why ``sql_type`` is not a Snowflake column type, or None when it is."""
    name, args = _type_args(sql_type)
    if name in _SNOWFLAKE_NUMBERS:
        precision, scale = _precision_scale(args, default_precision=38)
        if len(args) > 2 or not 1 <= precision <= 38 or not 0 <= scale <= precision:
            return f"{sql_type}: NUMBER needs 1 <= precision <= 38 and 0 <= scale <= precision"
        return None
    if name in _SNOWFLAKE_TEXT:
        if len(args) > 1 or (args and not 1 <= args[0] <= 16_777_216):
            return f"{sql_type}: a text length is 1 to 16777216"
        return None
    if name in _SNOWFLAKE_INTEGERS | {"DATE"}:
        return None if not args else f"{sql_type}: {name} takes no arguments"
    if name in _SNOWFLAKE_TIMES:
        return None if not args or (len(args) == 1 and 0 <= args[0] <= 9) else f"{sql_type}: precision is 0 to 9"
    return f"{sql_type}: not a Snowflake data type"


def snowflake_ddl_problems(sql: str) -> list[str]:
    """Everything in ``sql`` that Snowflake's CREATE TABLE reference does not allow (empty: none)."""
    table = parse_create_table(sql)
    return [problem for t in table.columns.values() if (problem := snowflake_type_problem(t))]


_BIGQUERY_INTEGERS = {"INT64", "INT", "SMALLINT", "INTEGER", "BIGINT", "TINYINT", "BYTEINT"}
_BIGQUERY_PLAIN = {"DATE", "DATETIME", "TIME", "TIMESTAMP", "BOOL", "FLOAT64", "JSON", "GEOGRAPHY"}


def bigquery_type_problem(sql_type: str) -> str | None:
    """Why ``sql_type`` is not a BigQuery (GoogleSQL) column type, or None when it is."""
    name, args = _type_args(sql_type)
    if name in {"NUMERIC", "DECIMAL"}:
        if not args:
            return None
        precision, scale = _precision_scale(args, default_precision=0)
        if len(args) > 2 or not 0 <= scale <= 9 or not max(1, scale) <= precision <= scale + 29:
            return f"{sql_type}: NUMERIC(P, S) needs 0 <= S <= 9 and max(1, S) <= P <= S + 29"
        return None
    if name in {"BIGNUMERIC", "BIGDECIMAL"}:
        if not args:
            return None
        precision, scale = _precision_scale(args, default_precision=0)
        if len(args) > 2 or not 0 <= scale <= 38 or not max(1, scale) <= precision <= scale + 38:
            return f"{sql_type}: BIGNUMERIC(P, S) needs 0 <= S <= 38 and max(1, S) <= P <= S + 38"
        return None
    if name in {"STRING", "BYTES"}:
        return None if len(args) <= 1 else f"{sql_type}: one length at most"
    if name in _BIGQUERY_INTEGERS | _BIGQUERY_PLAIN:
        return None if not args else f"{sql_type}: {name} takes no arguments"
    return f"{sql_type}: not a BigQuery data type"


def bigquery_ddl_problems(sql: str) -> list[str]:
    """Everything in ``sql`` that BigQuery's CREATE TABLE reference does not allow (empty: none)."""
    table = parse_create_table(sql)
    problems = [problem for t in table.columns.values() if (problem := bigquery_type_problem(t))]
    if table.primary_key and not table.primary_key_not_enforced:
        problems.append("PRIMARY KEY without NOT ENFORCED")
    if "." not in table.name:
        problems.append(f"table {table.name} is not qualified with its dataset")
    return problems
