"""
Extraction of M months x E employers: token and API requests, throughput, warehouse writes.

``python -m benchmarks.extraction --sandbox URL --months 12 --employers 10``

- project: one ``IndeedQuotaUsageOperator(employer_id=e, month=[M months])`` per employer, as
  ``.partial(month=[...]).expand(employer_id=[...])`` runs it (one task per employer).
- anchor: the hand-written equivalent with apache-airflow-providers-http, one task per employer:
  one ``HttpHook(method="POST")`` call for the employer's token, then one ``HttpHook(method="GET")``
  call per month with ``Authorization: Bearer <token>`` (see :func:`anchor_task`).

Counted by the sandbox: token requests and API requests, for a clean run and for a run where one
API call (the 6th month of the 5th employer) answers a transient HTTP 500. The anchor's task then
fails and Airflow's task retry (``retries=1``) runs it again from the start; the provider's hook
retries that one call. Timed: the clean run (months x employers per second), and the warehouse
write of the records (one write of M rows per task) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import (
    INDEED_CLIENT_ID,
    INDEED_SECRET,
    POSTGRES_URL,
    airflow_home,
    define_connections,
    emit,
    quiet_logging,
    set_connection,
)

FAULTY_EMPLOYER, FAULTY_MONTH = 4, 5  # 0-based: the 6th month of the 5th employer
TABLE = "indeed_api_quota_usage"


def months_list(count: int) -> list[str]:
    """``count`` consecutive months from 12/2024, as ``MMyyyy``."""
    months, year, month = [], 2024, 12
    for _ in range(count):
        months.append(f"{month:02d}{year}")
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return months


def employers(count: int) -> list[str]:
    return [f"emp-bench-{index:02d}" for index in range(count)]


# ---------------------------------------------------------------------------------- the anchor


def anchor_task(employer_id: str, months: list[str], before_call: Callable[[int], None] | None = None) -> list[dict]:
    """
    What a user writes with HttpHook: the body of a ``@task`` extracting one employer's months.

    The OAuth client is kept in a separate connection (``indeed_app``): an ``http`` connection with
    a login would make HttpHook send Basic auth on every call, replacing the Bearer token.
    """
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk import BaseHook

    app = BaseHook.get_connection("indeed_app")
    token = (
        HttpHook(method="POST", http_conn_id="indeed_http")
        .run(
            "oauth/v2/tokens",
            data={
                "client_id": app.login,
                "client_secret": app.password,
                "grant_type": "client_credentials",
                "scope": "employer.advertising.account.read",
                "employer": employer_id,
            },
        )
        .json()["access_token"]
    )
    api = HttpHook(method="GET", http_conn_id="indeed_http")
    records = []
    for index, month in enumerate(months):
        if before_call is not None:
            before_call(index)
        response = api.run(
            "ads/v1/apiquotausage",
            data={"monthYear": month},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        data = response.json(parse_float=Decimal)["data"]
        records.append(
            {
                "employer_id": employer_id,
                "month": data["mmyyyy"],
                "api_quota": data["apiQuota"],
                "requests_count": sum(item["requestsCount"] for item in data["apiUsage"]),
                "spend_amount": data["sponsoredJobsSpendAmount"],
                "currency_code": data["currencyCode"],
            }
        )
    return records


def run_anchor(months: list[str], employer_ids: list[str], fault: Callable[[int, int], None] | None) -> list[dict]:
    records = []
    for number, employer_id in enumerate(employer_ids):
        before = (lambda index, number=number: fault(number, index)) if fault else None
        try:
            records.extend(anchor_task(employer_id, months, before))
        except Exception:
            # Airflow's task retry (retries=1): the whole task runs again.
            records.extend(anchor_task(employer_id, months, None))
    return records


# ---------------------------------------------------------------------------------- the project


def run_project(months: list[str], employer_ids: list[str], fault: Callable[[int, int], None] | None) -> list[Any]:
    from airflow_provider_quota.hooks.indeed import IndeedHook
    from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator

    records: list[Any] = []
    original = IndeedHook.get_api_quota_usage
    for number, employer_id in enumerate(employer_ids):
        calls = [0]

        def counted(self: Any, month: Any = None, number: int = number, calls: list[int] = calls) -> Any:
            if fault is not None:
                fault(number, calls[0])
            calls[0] += 1
            record = original(self, month)
            records.append(record)
            return record

        IndeedHook.get_api_quota_usage = counted  # type: ignore[method-assign]
        try:
            operator = IndeedQuotaUsageOperator(task_id=f"extract_{number}", employer_id=employer_id, month=months)
            operator.execute({})  # type: ignore[arg-type]
        finally:
            IndeedHook.get_api_quota_usage = original  # type: ignore[method-assign]
    return records


# ---------------------------------------------------------------------------------- warehouse


def project_write(conn_id: str, batches: list[list[Any]]) -> float:
    from airflow_provider_quota.utils.warehouse import get_db_hook, write_usage

    extracted_at = datetime.now(timezone.utc)
    begin = time.perf_counter()
    for batch in batches:  # one write per task
        write_usage(get_db_hook(conn_id), TABLE, batch, extracted_at=extracted_at, create_table=True)
    return time.perf_counter() - begin


def anchor_write(conn_id: str, batches: list[list[dict]]) -> float:
    """The hand-written upsert through common.sql: CREATE TABLE IF NOT EXISTS, then insert_rows(replace=True)."""
    from airflow.sdk import BaseHook

    extracted_at = datetime.now(timezone.utc)
    begin = time.perf_counter()
    for batch in batches:
        hook = BaseHook.get_connection(conn_id).get_hook()
        hook.run(
            f"CREATE TABLE IF NOT EXISTS {TABLE}_anchor (employer_id VARCHAR(256) NOT NULL, month CHAR(6) NOT NULL, "
            "api_quota BIGINT, requests_count BIGINT, spend_amount TEXT, currency_code VARCHAR(8), "
            "extracted_at TEXT, PRIMARY KEY (employer_id, month))"
        )
        hook.insert_rows(
            f"{TABLE}_anchor",
            [
                (
                    row["employer_id"],
                    row["month"],
                    row["api_quota"],
                    row["requests_count"],
                    str(row["spend_amount"]),
                    row["currency_code"],
                    extracted_at.isoformat(),
                )
                for row in batch
            ],
            target_fields=[
                "employer_id",
                "month",
                "api_quota",
                "requests_count",
                "spend_amount",
                "currency_code",
                "extracted_at",
            ],
            replace=True,
            replace_index=["employer_id", "month"],
            commit_every=len(batch),
        )
    return time.perf_counter() - begin


def postgres_reachable() -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip()[:120]}"
    return None


def drop_tables(conn_id: str) -> None:
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(conn_id).get_hook()
    for table in (TABLE, f"{TABLE}_anchor"):
        hook.run(f"DROP TABLE IF EXISTS {table}")


def warehouse(project_records: list[Any], anchor_records: list[dict], months: int, repeats: int = 5) -> dict[str, Any]:
    rows = len(project_records)
    project_batches = [project_records[start : start + months] for start in range(0, rows, months)]
    anchor_batches = [anchor_records[start : start + months] for start in range(0, rows, months)]
    set_connection("warehouse_sqlite", conn_type="sqlite", host=os.path.join(tempfile.mkdtemp(), "warehouse.db"))
    targets = {"sqlite": "warehouse_sqlite"}
    skipped = postgres_reachable()
    if skipped is None:
        parts = urlsplit(POSTGRES_URL)
        set_connection(
            "warehouse_pg",
            conn_type="postgres",
            host=parts.hostname,
            port=parts.port or 5432,
            login=parts.username,
            password=parts.password,
            schema=parts.path.lstrip("/"),
        )
        targets["postgresql"] = "warehouse_pg"
    results: dict[str, Any] = {"rows": rows, "writes": len(project_batches), "postgres_skipped": skipped}
    for name, conn_id in targets.items():
        drop_tables(conn_id)
        project_times, anchor_times = [], []
        for _ in range(repeats):  # alternate, so drift hits both alike; reruns are upserts
            project_times.append(project_write(conn_id, project_batches))
            anchor_times.append(anchor_write(conn_id, anchor_batches))
        drop_tables(conn_id)
        results[name] = {
            "project_ms_per_row": statistics.median(project_times) / rows * 1000,
            "anchor_ms_per_row": statistics.median(anchor_times) / rows * 1000,
        }
    return results


# ---------------------------------------------------------------------------------- main


def main(sandbox_url: str, month_count: int, employer_count: int, repeats: int) -> dict[str, Any]:
    from airflow_provider_quota.hooks import indeed
    from airflow_provider_quota.hooks.base import QuotaApiHook
    from airflow_provider_quota.sandbox.client import SandboxClient

    control = SandboxClient(sandbox_url)
    months, employer_ids = months_list(month_count), employers(employer_count)
    assert date(int(months[-1][2:]), int(months[-1][:2]), 1) <= date.today(), "months must not be in the future"
    runners = {"project": run_project, "anchor": run_anchor}

    def counts() -> dict[str, int]:
        stats = control.stats()["requests"]
        return {"token_requests": stats["indeed_token"], "api_requests": stats["indeed_quota_usage"]}

    result: dict[str, Any] = {"months": month_count, "employers": employer_count}
    # Warm-up (imports, first connections), then timed clean runs, alternating project and anchor.
    for runner in runners.values():
        indeed._TOKENS.clear()
        runner(months[:1], employer_ids[:1], None)
    timings: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    records: dict[str, Any] = {}
    for _ in range(repeats):
        for name, runner in runners.items():
            indeed._TOKENS.clear()  # every repeat starts without a cached token, like a fresh worker
            control.reset()
            begin, begin_cpu = time.perf_counter(), time.process_time()
            records[name] = runner(months, employer_ids, None)
            timings[name].append(time.perf_counter() - begin)
            cpu[name].append(time.process_time() - begin_cpu)
            result.setdefault(name, {}).update(counts())
    calls = month_count * employer_count
    for name in runners:
        result[name]["seconds"] = statistics.median(timings[name])
        result[name]["per_second"] = calls / result[name]["seconds"]
        # CPU of this process (the worker) per month x employer; the sandbox runs in another process.
        result[name]["cpu_ms_per_call"] = statistics.median(cpu[name]) / calls * 1000
        result[name]["records"] = len(records[name])

    # One transient 500 in the middle; the provider's retry waits are skipped (no real sleeping).
    def inject(employer: int, call: int) -> None:
        if (employer, call) == (FAULTY_EMPLOYER, FAULTY_MONTH):
            control.add_fault("500", endpoint="indeed_quota_usage", count=1)

    QuotaApiHook._sleep = lambda self, seconds: None  # type: ignore[method-assign]
    for name, runner in runners.items():
        indeed._TOKENS.clear()
        control.reset()
        runner(months, employer_ids, inject)
        result[name]["with_one_500"] = counts()

    result["warehouse"] = warehouse(records["project"], records["anchor"], month_count)
    return result


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--employers", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    airflow_home()
    define_connections(args.sandbox)
    set_connection("indeed_app", conn_type="generic", login=INDEED_CLIENT_ID, password=INDEED_SECRET)
    quiet_logging()
    emit(main(args.sandbox, args.months, args.employers, args.repeats))


if __name__ == "__main__":
    cli()
