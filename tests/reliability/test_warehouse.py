"""
Warehouse integrity on SQLite and on real PostgreSQL and MySQL/MariaDB servers: a failed write keeps the previous
rows, concurrent runs of one (employer, month) leave one row, and a rerun after any failure
converges to the right row (the sandbox's data is deterministic: it is the oracle).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import partial
from typing import Any

import pytest

from airflow_provider_quota.exceptions import QuotaApiError
from airflow_provider_quota.hooks import indeed
from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.utils import warehouse
from airflow_provider_quota.utils.warehouse import get_db_hook
from tests.conftest import WAREHOUSES, fail_writes_of, warehouse_conn_id
from tests.reliability.conftest import expected_usage, warehouse_keys

MONTHS = ["122024", "012025", "022025", "032025"]
EMPLOYERS = ["emp-acme", "emp-globex", "emp-eu-initech"]


@pytest.fixture(params=WAREHOUSES)
def db(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(connection id, fresh table name) on each warehouse of WAREHOUSES."""
    conn_id = warehouse_conn_id(request)
    table = f"integrity_{uuid.uuid4().hex[:10]}"
    yield conn_id, table
    hook = get_db_hook(conn_id)
    hook.run(f"DROP TABLE IF EXISTS {table}")
    if hook.dialect_name == "postgresql":
        hook.run(f"DROP FUNCTION IF EXISTS {table}_fail() CASCADE")


def extraction(conn_id: str, table: str, employer: str = "emp-acme", months: Any = MONTHS) -> IndeedQuotaUsageOperator:
    return IndeedQuotaUsageOperator(
        task_id="extract", employer_id=employer, month=months, sql_conn_id=conn_id, table=table
    )


def rows(conn_id: str, table: str) -> dict[tuple[str, str], tuple[int, int, Decimal, str]]:
    """The table's rows by (employer_id, month): api_quota, requests_count, spend_amount, currency_code."""
    records = get_db_hook(conn_id).get_records(
        f"SELECT employer_id, month, api_quota, requests_count, spend_amount, currency_code FROM {table}"
    )
    return {(e, m): (int(q), int(c), Decimal(str(s)), cur) for e, m, q, c, s, cur in records}


def right_rows(keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int, Decimal, str]]:
    """What the table must hold for these keys: the sandbox's (deterministic) answers."""
    result = {}
    for employer, month in keys:
        data = expected_usage(employer, month)
        result[(employer, month)] = (
            data["api_quota"],
            data["requests_count"],
            data["spend_amount"],
            data["currency_code"],
        )
    return result


def test_database_error_mid_write_keeps_the_previous_rows_then_a_rerun_converges(indeed_conn, sandbox, db, figures):
    conn_id, table = db
    keys = [("emp-acme", month) for month in MONTHS]
    figures.task(lambda: extraction(conn_id, table).execute({}))
    before = rows(conn_id, table)
    assert before == right_rows(keys)

    # The API now reports new figures, and the database fails on the third row of four.
    new_spend = Decimal("77.77")
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", count=4, patch={"sponsoredJobsSpendAmount": new_spend})
    remove_failure = fail_writes_of(conn_id, table, MONTHS[2])
    figures.task(lambda: extraction(conn_id, table).execute({}), expect=Exception, match="injected database failure")
    assert rows(conn_id, table) == before  # rows 1 and 2 of the failed write were rolled back too

    remove_failure()
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", count=4, patch={"sponsoredJobsSpendAmount": new_spend})
    figures.task(lambda: extraction(conn_id, table).execute({}))
    after = rows(conn_id, table)
    assert {key: value[2] for key, value in after.items()} == dict.fromkeys(keys, new_spend)
    assert figures.rows(keys, warehouse_keys(conn_id, table)) == (0, 0)


def test_api_failure_mid_extraction_writes_nothing_then_a_rerun_converges(
    indeed_conn, sandbox, db, recorded_sleeps, figures
):
    conn_id, table = db
    keys = [("emp-acme", month) for month in MONTHS]
    figures.task(lambda: extraction(conn_id, table, months=MONTHS[:2]).execute({}))
    before = rows(conn_id, table)

    # month 3 of 4 meets a 500 storm: the task fails and writes nothing, not even months 1 and 2
    sandbox.add_fault(
        "patch", endpoint="indeed_quota_usage", count=2, patch={"sponsoredJobsSpendAmount": Decimal("1.00")}
    )
    sandbox.add_fault("500", endpoint="indeed_quota_usage", count=5)
    figures.task(lambda: extraction(conn_id, table).execute({}), expect=QuotaApiError, match=r"HTTP 500")
    assert rows(conn_id, table) == before

    figures.task(lambda: extraction(conn_id, table).execute({}))
    assert rows(conn_id, table) == right_rows(keys)
    assert figures.rows(keys, warehouse_keys(conn_id, table)) == (0, 0)


@pytest.mark.parametrize("runs", [2, 6])
def test_concurrent_runs_of_one_employer_and_month_leave_one_row(indeed_conn, sandbox, db, monkeypatch, figures, runs):
    """``runs`` runs of the same (employer, month) on a table that does not exist yet, writing at the same instant."""
    conn_id, table = db
    write_usage = warehouse.write_usage
    together = threading.Barrier(runs, timeout=60)

    def write_at_once(*args: Any, **kwargs: Any) -> int:
        together.wait()  # every run has its answer: now they all create and upsert at once
        return write_usage(*args, **kwargs)

    monkeypatch.setattr(warehouse, "write_usage", write_at_once)
    with ThreadPoolExecutor(runs) as pool:
        futures = [
            pool.submit(figures.task, partial(extraction(conn_id, table, months="012025").execute, {}))
            for _ in range(runs)
        ]
        results = [future.result() for future in futures]
    assert {result["month"] for result in results} == {"012025"}
    keys = [("emp-acme", "012025")]
    assert figures.rows(keys, warehouse_keys(conn_id, table)) == (0, 0)
    assert rows(conn_id, table) == right_rows(keys)


def test_concurrent_overlapping_backfills_of_many_employers(indeed_conn, sandbox, db, monkeypatch, figures):
    """Twelve runs at once: three employers, each backfilled by four overlapping month ranges."""
    conn_id, table = db
    ranges = [MONTHS[:2], MONTHS[1:3], MONTHS[2:], MONTHS]
    runs = [(employer, months) for employer in EMPLOYERS for months in ranges]
    write_usage = warehouse.write_usage
    together = threading.Barrier(len(runs), timeout=60)

    def write_at_once(*args: Any, **kwargs: Any) -> int:
        together.wait()
        return write_usage(*args, **kwargs)

    monkeypatch.setattr(warehouse, "write_usage", write_at_once)
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = [
            pool.submit(figures.task, partial(extraction(conn_id, table, employer, months).execute, {}))
            for employer, months in runs
        ]
        for future in futures:
            future.result()
    keys = [(employer, month) for employer in EMPLOYERS for month in MONTHS]
    assert figures.rows(keys, warehouse_keys(conn_id, table)) == (0, 0)
    assert rows(conn_id, table) == right_rows(keys)
    assert sandbox.stats()["tokens_issued"] == dict.fromkeys(EMPLOYERS, 1)  # one token per employer, shared


def test_rerun_after_each_kind_of_failure_converges(indeed_conn, sandbox, db, recorded_sleeps, figures):
    """One run per failure kind, each leaving the table as it was; then one clean run makes it right."""
    conn_id, table = db
    keys = [("emp-acme", month) for month in MONTHS]
    figures.task(lambda: extraction(conn_id, table, months=MONTHS[:1]).execute({}))
    snapshot = rows(conn_id, table)
    failures: list[tuple[Callable[[], Any], str]] = [
        (lambda: (indeed._TOKENS.clear(), sandbox.add_fault("503", endpoint="indeed_token", count=5)), r"HTTP 503"),
        (lambda: sandbox.add_fault("reset", endpoint="indeed_quota_usage", count=5), r"CONNECTION_ERROR"),
        (lambda: sandbox.add_fault("malformed", endpoint="indeed_quota_usage", count=1), r"malformed JSON"),
        (lambda: sandbox.add_fault("patch", endpoint="indeed_quota_usage", remove=["apiQuota"]), r"apiQuota"),
        (lambda: sandbox.add_fault("status", status=403, endpoint="indeed_quota_usage"), r"HTTP 403"),
    ]
    for inject, problem in failures:
        inject()
        figures.task(lambda: extraction(conn_id, table).execute({}), expect=Exception, match=problem)
        sandbox.clear_faults()
        assert rows(conn_id, table) == snapshot
    figures.task(lambda: extraction(conn_id, table).execute({}))
    assert rows(conn_id, table) == right_rows(keys)
    assert figures.rows(keys, warehouse_keys(conn_id, table)) == (0, 0)
