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
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

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
    with smtp_inbox() as inbox:
        ok = show_budget_guard(dags["indeed_budget_guard"], client, inbox) and ok
    ok = show_api_quota_gate(dags["indeed_api_quota_gate"], client) and ok
    return 0 if ok else 1


def show_monthly_spend(dag, client) -> bool:
    from airflow_provider_quota.utils.warehouse import get_db_hook

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


@contextlib.contextmanager
def smtp_inbox() -> Iterator[list[Message]]:
    """A local SMTP server (aiosmtpd) behind ``smtp_default``: the mails it received."""
    import logging

    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    received: list[Message] = []

    class Inbox:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
            received.append(message_from_bytes(envelope.content))
            return "250 OK"

    port = free_port()
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    smtp = {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"disable_ssl": True, "disable_tls": True}}
    os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(smtp)
    try:
        yield received
    finally:
        controller.stop()


def show_budget_guard(dag, client, inbox: list[Message]) -> bool:
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    from airflow_provider_quota.hooks import indeed
    from airflow_provider_quota.utils.budget import month_span

    print("== indeed_budget_guard: daily check of spend and API quota, mapped over 3 employers ==")
    indeed._TOKENS.clear()  # fresh workers: the sandbox was reset since the tokens of the first DAG
    before = client.stats()["requests"]
    now = datetime.now(timezone.utc)
    start, end = month_span(now.date().replace(day=1), dag.timezone)
    elapsed = Decimal(str(min(max((now - start) / (end - start), 0.0), 1.0)))
    # spend at a share of the pace, and requests used, for the month to date
    scenario = {"emp-acme": ("0.9", 1200, 3000), "emp-globex": ("1.5", 2750, 3000), "emp-umbrella": ("0.5", 300, 1500)}
    for employer, (pace, used, quota) in scenario.items():
        spend = (Decimal(20000) * elapsed * Decimal(pace)).quantize(Decimal("0.01"))
        client.set_usage(employer, spend=str(spend), requests_count=used, api_quota=quota)
    print(
        f"Budget 20,000 USD a month, alert at 1.2 x pace or 90 % of apiQuota; "
        f"{now.astimezone(dag.timezone):%Y-%m-%d %H:%M} in {dag.timezone} is {elapsed:.1%} into the month"
    )
    with output_to(LOG):
        run = dag.test()
        with create_session() as session:
            tis = sorted(run.get_task_instances(session=session), key=lambda ti: ti.map_index)
            results = {
                ti.map_index: (ti.state, ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)) for ti in tis
            }
    print(f"  {'employer':<13} {'spend to date':>14} {'expected':>10} {'pace':>6} {'API requests':>22}  result")
    for index, employer in enumerate(scenario):
        state, record = results[index]
        if record:
            used, quota, share = record["requests_count"], record["api_quota"], Decimal(record["api_quota_share_used"])
            spend, expected = Decimal(record["spend_amount"]), Decimal(record["expected_to_date"])
            pace = f"{Decimal(record['pace_ratio']):.2f}" if record["pace_ratio"] else "-"
            usage = f"{used:,} of {quota:,} ({share:.0%})"
            print(f"  {employer:<13} {spend:>14,.2f} {expected:>10,.2f} {pace:>6} {usage:>22}  ok")
        else:
            print(f"  {employer:<13} {'':>14} {'':>10} {'':>6} {'':>22}  {state}: mailed")
    for mail in inbox:
        body = "".join(part.get_payload(decode=True).decode() for part in mail.walk() if not part.is_multipart())
        print(f"Mail to {mail['To']}, subject {mail['Subject']!r}:")
        print("\n".join(textwrap.wrap(re.sub(r"<[^>]+>", "", body), 96, initial_indent="  ", subsequent_indent="  ")))
    after = client.stats()["requests"]
    usage_requests = after["indeed_quota_usage"] - before["indeed_quota_usage"]
    tokens = after["indeed_token"] - before["indeed_token"]
    print(f"Indeed calls: {usage_requests} usage requests, {tokens} token requests (one each per employer)\n")
    failed = [index for index, (state, _) in results.items() if state == TaskInstanceState.FAILED]
    return failed == [1] and len(inbox) == 1 and usage_requests == 3


def show_api_quota_gate(dag, client) -> bool:
    from airflow.sdk.exceptions import TaskDeferred

    print("== indeed_api_quota_gate: hold Indeed calls while the employer's API quota is nearly spent ==")
    before = client.requests_to("indeed_quota_usage")
    client.set_usage("emp-acme", requests_count=1200, api_quota=3000)
    with output_to(LOG):
        run = dag.test()
    calls = next((line for line in LOG.read_text().splitlines() if "requests left in" in line), "")
    print(f"emp-acme has used 1,200 of 3,000 API requests this month. Gate run: {run.state}")
    if calls:
        print("  sync_campaigns: " + calls.split("] ", 1)[-1].split(" [", 1)[0].strip())
    client.set_usage("emp-acme", requests_count=2900, api_quota=3000)
    gate = dag.get_task("wait_for_api_quota")
    with output_to(LOG):
        try:
            gate.execute({})
            resets_at = None
        except TaskDeferred as deferred:
            resets_at = deferred.trigger.resets_at
    deferred_until = resets_at.isoformat() if resets_at else "(it did not defer)"
    print(
        f"At 2,900 of 3,000 requests (97 %) the gate checked once and deferred until {deferred_until}, the first "
        "instant of next month (+ up to 5.5 s), to check once more then, however long the wait.\n"
        f"Usage requests for both runs: {client.requests_to('indeed_quota_usage') - before}\n"
    )
    return run.state == "success" and resets_at is not None


if __name__ == "__main__":
    sys.exit(main())
