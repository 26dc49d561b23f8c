"""
`make demo`: run the example DAGs end to end against the local sandbox and show the results.

A throwaway Airflow home under .demo/ holds the SQLite metadata database and the SQLite
warehouse; connections are AIRFLOW_CONN_* JSON variables pointing at the sandbox.
Airflow's own task logs go to .demo/dag-test.log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".demo"
HOME = DEMO / "airflow-home"
WAREHOUSE = HOME / "warehouse.db"
LOG = DEMO / "dag-test.log"
RESET_AFTER_FIRST_CHECK = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_environment(sandbox_url: str) -> dict[str, str]:
    connections = {
        "AIRFLOW_CONN_SONARLY_DEFAULT": {
            "conn_type": "sonarly",
            "host": sandbox_url,
            "password": "sk_test_sandbox",
            "extra": {"account_group_id": "ag_sandbox"},
        },
        "AIRFLOW_CONN_INDEED_DEFAULT": {
            "conn_type": "indeed",
            "host": sandbox_url,
            "login": "sandbox-client-id",
            "password": "sandbox-client-secret",
        },
        "AIRFLOW_CONN_WAREHOUSE": {"conn_type": "sqlite", "host": str(WAREHOUSE)},
    }
    os.environ.update(
        {
            "AIRFLOW_HOME": str(HOME),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
            **{name: json.dumps(value) for name, value in connections.items()},
        }
    )
    return {name: json.dumps(value) for name, value in connections.items()}


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send everything written to stdout and stderr (Airflow's task logs) to a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    HOME.mkdir(parents=True)
    port = free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_quota.sandbox", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=(DEMO / "sandbox.log").open("w"),
    )
    try:
        return run(sandbox_url)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def run(sandbox_url: str) -> int:
    connections = prepare_environment(sandbox_url)
    from airflow_provider_quota.sandbox import SandboxClient

    client = SandboxClient(sandbox_url)
    for _ in range(100):
        with contextlib.suppress(Exception):
            client.stats()
            break
        time.sleep(0.1)

    print(f"Sandbox (Sonarly + Indeed APIs) on {sandbox_url}")
    print(f"Airflow home {HOME} (SQLite metadata database); task logs in {LOG}")
    print("Connections, as you would define them:")
    for name, value in connections.items():
        print(f"  export {name}='{value}'")
    print()

    with output_to(LOG):
        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils.db import resetdb

        resetdb()
        dags = DagBag(dag_folder=str(REPO / "example_dags")).dags

    ok = show_monthly_spend(dags["indeed_monthly_spend"], client)
    ok = show_quota_gate(dags["prospecting_quota_gate"], client) and ok
    return 0 if ok else 1


def show_monthly_spend(dag, client) -> bool:
    from airflow_provider_quota.warehouse import get_db_hook

    print("== indeed_monthly_spend: monthly Indeed API usage and spend, mapped over 3 employers ==")
    # Manual runs of an interval timetable cover the month that ends at the logical date.
    month_ends = [datetime(2025, month, 1, tzinfo=timezone.utc) for month in (1, 2, 3)]
    states = []
    started = time.monotonic()
    for month_end in month_ends:
        with output_to(LOG):
            states.append(dag.test(logical_date=month_end).state)
    elapsed = time.monotonic() - started
    print(f"3 runs (12/2024, 01/2025, 02/2025): {', '.join(str(s) for s in states)} in {elapsed:.1f} s")
    with output_to(LOG):
        rows = get_db_hook("warehouse").get_records(
            "SELECT month_start, employer_id, requests_count, api_quota, spend_amount, currency_code "
            "FROM indeed_api_quota_usage ORDER BY month_start, employer_id"
        )
    print(f"\nSQLite warehouse {WAREHOUSE}, table indeed_api_quota_usage:")
    print(f"  {'month':<8} {'employer':<16} {'API requests used of quota':>28} {'spend':>16}")
    for month_start, employer, used, quota, spend, currency in rows:
        usage = f"{used:,} of {quota:,} ({used / quota:.0%})"
        print(f"  {month_start[:7]:<8} {employer:<16} {usage:>28} {Decimal(spend):>12,.2f} {currency}")
    stats = client.stats()
    print(
        f"Indeed calls: {stats['requests']['indeed_quota_usage']} usage requests, "
        f"{stats['requests']['indeed_token']} token requests (one per employer, reused while it is valid)\n"
    )
    return all(state == "success" for state in states) and len(rows) == 9


def show_quota_gate(dag, client) -> bool:
    print("== prospecting_quota_gate: wait for the Sonarly prospecting quota to reset ==")
    client.reset()
    client.set_quota("ag_sandbox", used=25, reset_after_first_check=RESET_AFTER_FIRST_CHECK)
    print(
        f"Quota of ag_sandbox: 0 of 25 left; the sandbox resets it "
        f"{RESET_AFTER_FIRST_CHECK:.0f} s after the first check"
    )
    with output_to(LOG):
        run = dag.test()
    checks = [r for r in client.recent_requests() if r["endpoint"] == "sonarly_quota"]
    waited = checks[-1]["at"] - checks[0]["at"] if len(checks) > 1 else 0.0
    searches = next((line for line in LOG.read_text().splitlines() if "starting" in line and "search(es)" in line), "")
    print(
        f"Gate run: {run.state}; waited {waited:.1f} s in the triggerer, no worker slot held "
        f"({RESET_AFTER_FIRST_CHECK:.0f} s to the reset + 0.5 s grace + up to 5 s random jitter)"
    )
    print(f"Quota requests during the wait: {len(checks)} (target 2: one check, one after the reset)")
    if searches:
        print("Prospecting task: " + searches.split("] ", 1)[-1].split(" [", 1)[0].strip())
    return run.state == "success" and len(checks) == 2


if __name__ == "__main__":
    sys.exit(main())
