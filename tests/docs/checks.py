"""
The checks that execute the docs' code blocks, one per ``check=`` name in a fence's info string.

Python DAG blocks are written to a temporary dags folder, parsed by a DagBag and run with
``dag.test()`` against the sandbox (and SQLite or the PostgreSQL test server as warehouse).
Shell blocks are run line by line, each line by the handler for its command (see
:data:`SHELL_COMMANDS`); a line no handler knows fails. The docs' sandbox address
``127.0.0.1:8765`` stands for the test sandbox, which listens on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import pytest
import requests

# Besides the public classes, the checks use these internals of the package (update here when the
# core moves them): hooks.indeed._TOKENS, utils.months.month_for_run,
# sandbox.state.quota_usage_data, utils.warehouse.create_table_sql and utils.warehouse.get_db_hook.
from airflow_provider_quota.hooks import indeed as indeed_hook_module
from airflow_provider_quota.hooks.indeed import IndeedHook
from airflow_provider_quota.hooks.sonarly import SonarlyHook
from airflow_provider_quota.models import ApiQuotaUsage, ProspectingQuota
from airflow_provider_quota.operators.indeed import IndeedBudgetCheckOperator, IndeedQuotaUsageOperator
from airflow_provider_quota.sandbox.state import quota_usage_data
from airflow_provider_quota.sensors.indeed import IndeedApiQuotaSensor
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor
from airflow_provider_quota.utils.months import month_for_run
from airflow_provider_quota.utils.warehouse import create_table_sql, get_db_hook
from tests.conftest import (
    INDEED_SECRET,
    SONARLY_KEY,
    dag_test_callbacks_get_the_exception,
    indeed_at,
    read_xcom,
    server_connection_fields,
    set_connection,
    sonarly_at,
)
from tests.docs.blocks import REPO, Block, all_blocks

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG

    from airflow_provider_quota.sandbox import SandboxClient

#: The docs' sandbox address; checks point it at the test sandbox.
DOC_SANDBOX = re.compile(r"\b(?:127\.0\.0\.1|localhost):8765\b")
#: The account group id the docs use as an example of a real one; the checks add it to the sandbox.
EXAMPLE_ACCOUNT_GROUP = "507f1f77bcf86cd799439011"
#: Logical date whose data interval (interval timetable) or previous month (trigger timetable) is 12/2024.
DECEMBER_2024_RUN = datetime(2025, 1, 1, tzinfo=timezone.utc)
FIRST_MONTH = date(2024, 12, 1)
UTC = timezone.utc


class Check(NamedTuple):
    """A named way of executing a code block: the languages it runs and how."""

    langs: tuple[str, ...]
    run: Callable[[Block, DocEnv], None]


CHECKS: dict[str, Check] = {}


def check(name: str, *langs: str) -> Callable[[Callable[[Block, DocEnv], None]], Callable[[Block, DocEnv], None]]:
    """Register a check for blocks in ``langs`` under ``name``."""

    def register(func: Callable[[Block, DocEnv], None]) -> Callable[[Block, DocEnv], None]:
        CHECKS[name] = Check(langs, func)
        return func

    return register


def run_block(block: Block, env: DocEnv) -> None:
    """Execute a block through the check its fence names, in a language that check runs."""
    known = ", ".join(sorted(CHECKS))
    assert block.check, f"{block.where}: the block names no check; add check=NAME to its fence, NAME one of {known}"
    assert block.check in CHECKS, f"{block.where}: unknown check {block.check!r}; known: {known}"
    langs, run = CHECKS[block.check]
    assert block.lang in langs, f"{block.where}: check {block.check} runs {langs} blocks, not {block.lang!r}"
    run(block, env)


class DocEnv:
    """What a check may use: the test's fixtures (requested on demand) and helpers around them."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        self.tmp_path: Path = request.getfixturevalue("tmp_path")
        self.dags_folder = self.tmp_path / "dags"

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)

    @cached_property
    def sandbox(self) -> SandboxClient:
        """The test sandbox, reset for this test."""
        return self.fixture("sandbox")

    @cached_property
    def sandbox_url(self) -> str:
        self.sandbox  # noqa: B018 (reset it before first use)
        return str(self.fixture("sandbox_server").url)

    def localize(self, text: str) -> str:
        """Replace the docs' sandbox address with the test sandbox's."""
        if not DOC_SANDBOX.search(text):
            return text
        return DOC_SANDBOX.sub(urlsplit(self.sandbox_url).netloc, text)

    def sandbox_connections(self) -> None:
        """``sonarly_default`` and ``indeed_default`` on the sandbox; the docs' example account group exists."""
        self.fixture("sonarly_conn")
        self.fixture("indeed_conn")
        self.sandbox.set_quota(EXAMPLE_ACCOUNT_GROUP)

    def sqlite_warehouse(self, *conn_ids: str) -> None:
        """The connections, all to one SQLite file of this test."""
        for conn_id in conn_ids:
            set_connection(self.monkeypatch, conn_id, conn_type="sqlite", host=str(self.tmp_path / "warehouse.db"))


# ---------------------------------------------------------------------------------------------- helpers


def blocks_where(predicate: Callable[[Block], bool]) -> list[Block]:
    return [block for block in all_blocks() if predicate(block)]


def block_defining_dag(dag_id: str, near: Block) -> Block:
    """The python block that defines ``dag_id``: on ``near``'s page first, then docs, then README."""
    candidates = blocks_where(
        lambda b: b.lang == "python" and re.search(rf"dag_id=[\"']{re.escape(dag_id)}[\"']", b.code)
    )
    if not candidates:
        pytest.fail(f"{near.where}: no python block of the docs defines a DAG {dag_id!r}")
    candidates.sort(key=lambda b: b.path != near.path)
    return candidates[0]


def exec_block(block: Block) -> tuple[dict[str, Any], str]:
    """Execute a python block as a module; return its namespace and what it printed."""
    namespace: dict[str, Any] = {"__name__": f"doc_block_{block.line}"}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102 (the docs are ours)
    return namespace, output.getvalue()


def load_dags(env: DocEnv, *blocks: Block) -> dict[str, DAG]:
    """Write the blocks into the dags folder of this test, parse it like Airflow does, and return its DAGs."""
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag

    env.fixture("airflow_db")
    env.dags_folder.mkdir(exist_ok=True)
    names = [f"doc_{block.path.stem.replace('-', '_')}_{block.line}.py" for block in blocks]
    for block, name in zip(blocks, names, strict=True):
        (env.dags_folder / name).write_text(block.code)
    # dag.test() syncs the "dags-folder" bundle, whose path is settings.DAGS_FOLDER.
    env.monkeypatch.setattr(settings, "DAGS_FOLDER", str(env.dags_folder))
    env.monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(env.dags_folder))
    bag = DagBag(dag_folder=str(env.dags_folder))
    assert bag.import_errors == {}, f"{[b.where for b in blocks]}: {bag.import_errors}"
    dags = {dag.dag_id: dag for dag in bag.dags.values() if Path(dag.fileloc).name in names}
    assert dags, f"{[b.where for b in blocks]}: no DAG defined"
    return dags


def run_dag(dag: DAG, **kwargs: Any) -> DagRun:
    dag_run = dag.test(**kwargs)
    assert dag_run.state == "success", f"dag.test() of {dag.dag_id}: {dag_run.state}"
    return dag_run


def task_instances(dag_run: DagRun, task_id: str) -> list[Any]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return [ti for ti in dag_run.get_task_instances(session=session) if ti.task_id == task_id]


def operator_arg(task: Any, name: str) -> Any:
    """An argument of a (possibly mapped) operator, or its default."""
    import inspect

    partial = getattr(task, "partial_kwargs", None)
    if partial is not None:
        if name in partial:
            return partial[name]
        return inspect.signature(task.operator_class.__init__).parameters[name].default
    return getattr(task, name)


def tasks_of(dag: DAG, operator_class: type, *, required: bool = True) -> list[Any]:
    """The DAG's tasks of ``operator_class``, mapped or not."""
    found = [
        task
        for task in dag.tasks
        if isinstance(task, operator_class) or getattr(task, "operator_class", None) is operator_class
    ]
    assert found or not required, f"{dag.dag_id} has no {operator_class.__name__}"
    return found


def extract_tasks(dag: DAG, *, required: bool = True) -> list[Any]:
    """The DAG's IndeedQuotaUsageOperator tasks, mapped or not."""
    return tasks_of(dag, IndeedQuotaUsageOperator, required=required)


def employers_of(task: Any) -> list[str]:
    """The employers a (possibly mapped) Indeed task reads; ``emp-acme`` is the test connection's default."""
    expand_input = getattr(task, "expand_input", None)
    if expand_input is not None:
        return list(expand_input.value["employer_id"])
    return [task.employer_id or "emp-acme"]


def warehouse_targets(dag: DAG) -> set[tuple[str, str]]:
    """(sql_conn_id, table) of every extract task that writes to a warehouse."""
    targets = {(operator_arg(t, "sql_conn_id"), operator_arg(t, "table")) for t in extract_tasks(dag, required=False)}
    return {(conn_id, table) for conn_id, table in targets if conn_id}


def sandbox_usage(employer: str, month: date) -> dict[str, Any]:
    """What the sandbox answers for an employer and a past month (deterministic)."""
    return quota_usage_data(employer, month, time.time())


def check_usage_rows(rows: list[tuple[Any, ...]], employers: set[str], months: list[date]) -> None:
    """Rows of (employer_id, month, api_quota, requests_count, spend_amount, currency_code) equal the API's answers."""
    expected = {}
    for employer in employers:
        for month in months:
            data = sandbox_usage(employer, month)
            expected[(employer, f"{month:%m%Y}")] = (
                data["apiQuota"],
                sum(item["requestsCount"] for item in data["apiUsage"]),
                Decimal(data["sponsoredJobsSpendAmount"]),
                data["currencyCode"],
            )
    actual = {(row[0], row[1]): (row[2], row[3], Decimal(str(row[4])), row[5]) for row in rows}
    assert actual == expected
    assert len(rows) == len(expected), "one row per (employer, month)"


def check_warehouse(dag: DAG, employers: set[str], months: list[date]) -> list[tuple[Any, ...]]:
    """The rows every extract task of the DAG wrote equal the API's answers; returns the last table's rows."""
    rows: list[tuple[Any, ...]] = []
    for conn_id, table in warehouse_targets(dag):
        query = f"SELECT employer_id, month, api_quota, requests_count, spend_amount, currency_code FROM {table}"
        rows = get_db_hook(conn_id).get_records(query)
        check_usage_rows(rows, employers, months)
    return rows


def months_between(first: date, last: date) -> list[date]:
    months, month = [], first
    while month <= last:
        months.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


# ---------------------------------------------------------------------------------------------- python checks


@check("gate-dag", "python")
def gate_dag(block: Block, env: DocEnv) -> None:
    """Run each DAG with dag.test() with the quota used up: the sensor waits for the reset, then the run succeeds."""
    env.sandbox_connections()
    for dag in load_dags(env, block).values():
        sensors = [task for task in dag.tasks if isinstance(task, SonarlyQuotaSensor)]
        assert sensors, f"{dag.dag_id} has no SonarlyQuotaSensor"
        env.sandbox.reset()
        env.sandbox.set_quota(EXAMPLE_ACCOUNT_GROUP)
        for sensor in sensors:
            assert sensor.sonarly_conn_id == "sonarly_default"
            group = sensor.account_group_id or "ag_sandbox"
            env.sandbox.set_quota(group, limit=25, used=25, reset_after_first_check=1.0)
        dag_run = run_dag(dag)
        assert env.sandbox.requests_to("sonarly_quota") == 2 * len(sensors), "one check, one after the reset"
        for sensor in sensors:
            quota = read_xcom(dag_run, sensor.task_id)
            assert quota["exhausted"] is False
            assert quota["remaining"] >= quota["granted"] >= 1, "the gate granted what the run needs"
            fields = {"list_type", "quota_type", "used", "limit", "remaining", "reset_at", "exhausted", "trace_id"}
            assert set(quota) == {*fields, "granted"}


@check("watcher-dag", "python")
def watcher_dag(block: Block, env: DocEnv) -> None:
    """The DAG is scheduled on a quota window watcher with plain-JSON arguments, which fires for a usable window."""
    from airflow_provider_quota.triggers.sonarly import SonarlyQuotaWindowTrigger

    env.sandbox_connections()
    for dag in load_dags(env, block).values():
        watchers = [watcher for asset in _assets_of(dag.timetable.asset_condition) for watcher in asset.watchers]
        assert watchers, f"{dag.dag_id} is not scheduled on an asset with a watcher"
        for watcher in watchers:
            trigger = watcher.trigger
            assert isinstance(trigger, SonarlyQuotaWindowTrigger)
            _, kwargs = trigger.serialize()
            assert json.loads(json.dumps(kwargs)) == kwargs, "Airflow hashes a watcher's arguments: plain JSON only"
            payload = asyncio.run(asyncio.wait_for(_first_window(trigger), timeout=60))
            assert payload["exhausted"] is False and payload["remaining"] >= trigger.min_remaining


async def _first_window(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the watcher stopped")


def _run_spend_dag(block: Block, env: DocEnv, make_warehouse: Callable[[str], None], rerun: bool) -> list[tuple]:
    env.sandbox_connections()
    rows: list[tuple] = []
    for dag in load_dags(env, block).values():
        targets = warehouse_targets(dag)
        assert targets, f"{dag.dag_id} writes to no warehouse"
        for conn_id, _ in targets:
            make_warehouse(conn_id)

        for _ in range(2 if rerun else 1):
            indeed_hook_module._TOKENS.clear()  # a fresh worker
            run_dag(dag, logical_date=DECEMBER_2024_RUN)
        rows = check_warehouse(dag, set(env.sandbox.stats()["tokens_issued"]), [FIRST_MONTH])
    return rows


@check("spend-dag-sqlite", "python")
def spend_dag_sqlite(block: Block, env: DocEnv) -> None:
    """Run the DAG with dag.test() for the 12/2024 interval on SQLite: the rows equal the API's answers."""
    _run_spend_dag(block, env, env.sqlite_warehouse, rerun=False)


@check("spend-dag-postgres", "python")
def spend_dag_postgres(block: Block, env: DocEnv) -> None:
    """Run the DAG twice with dag.test() for the 12/2024 interval, writing to PostgreSQL: one exact row per employer."""
    import psycopg2

    url, schema = env.fixture("postgres_url"), f"docs_{uuid.uuid4().hex[:12]}"
    connection = psycopg2.connect(url)
    connection.autocommit = True
    cursor = connection.cursor()
    try:
        cursor.execute(f"CREATE SCHEMA {schema}")

        def make_warehouse(conn_id: str) -> None:
            fields = server_connection_fields(url)
            set_connection(env.monkeypatch, conn_id, **fields, extra={"options": f"-c search_path={schema}"})

        rows = _run_spend_dag(block, env, make_warehouse, rerun=True)
        assert all(isinstance(row[4], Decimal) for row in rows)
        cursor.execute(
            "SELECT data_type, numeric_scale FROM information_schema.columns "
            "WHERE table_schema = %s AND column_name = 'spend_amount'",
            (schema,),
        )
        assert cursor.fetchall() == [("numeric", None)], "money is an unconstrained NUMERIC"
    finally:
        cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.close()


@check("asset-schedule", "python")
def asset_schedule(block: Block, env: DocEnv) -> None:
    """Parse the DAG: the Assets it is scheduled on are outlets of an extract task of a DAG on the same page."""
    consumers = load_dags(env, block)
    producers = load_dags(env, *blocks_where(lambda b: b.path == block.path and b.check in SPEND_DAG_CHECKS))
    outlets = {
        asset.uri
        for dag in producers.values()
        for task in extract_tasks(dag)
        for asset in (operator_arg(task, "outlets") or [])
    }
    assert outlets, "the extract tasks declare no outlet"
    for dag in consumers.values():
        scheduled = {asset.uri for asset in _assets_of(dag.timetable.asset_condition)}
        assert scheduled, f"{dag.dag_id} is not scheduled on an Asset"
        assert scheduled <= outlets, f"{dag.dag_id} waits for {scheduled - outlets}, which no extract task writes"


def _assets_of(condition: Any) -> Iterator[Any]:
    from airflow.sdk import Asset
    from airflow.sdk.definitions.asset import AssetBooleanCondition

    if isinstance(condition, Asset):
        yield condition
    elif isinstance(condition, AssetBooleanCondition):
        for item in condition.objects:
            yield from _assets_of(item)


@check("backfill-dag", "python")
def backfill_dag(block: Block, env: DocEnv) -> None:
    """Run the DAG with dag.test() on SQLite: one row per completed month since 12/2024, one access token."""
    env.sandbox_connections()
    for dag in load_dags(env, block).values():
        env.sqlite_warehouse(*(conn_id for conn_id, _ in warehouse_targets(dag)))
        run_dag(dag)
        this_month = datetime.now(UTC).date().replace(day=1)
        months = months_between(
            FIRST_MONTH, date(this_month.year - (this_month.month == 1), (this_month.month - 2) % 12 + 1, 1)
        )
        stats = env.sandbox.stats()
        assert stats["tokens_issued"] == {"emp-acme": 1}, "one token for every month"
        assert stats["requests"]["indeed_quota_usage"] == len(months)
        check_warehouse(dag, {"emp-acme"}, months)


@check("mapping-dag", "python")
def mapping_dag(block: Block, env: DocEnv) -> None:
    """Export the page's AIRFLOW_VAR_* lines, run the DAG with dag.test(): one instance, token and row per employer."""
    env.sandbox_connections()
    for shell_block in blocks_where(lambda b: b.path == block.path and b.lang == "bash"):
        for argv in command_lines(shell_block):
            if argv[0] == "export" and argv[1].startswith("AIRFLOW_VAR_"):
                name, _, value = argv[1].partition("=")
                env.monkeypatch.setenv(name, value)
                variable = json.loads(value)
    employers = set(variable)
    for dag in load_dags(env, block).values():
        env.sqlite_warehouse(*(conn_id for conn_id, _ in warehouse_targets(dag)))
        dag_run = run_dag(dag, logical_date=DECEMBER_2024_RUN)
        stats = env.sandbox.stats()
        assert stats["tokens_issued"] == dict.fromkeys(employers, 1)
        for task in extract_tasks(dag):
            assert sorted(ti.map_index for ti in task_instances(dag_run, task.task_id)) == list(range(len(employers)))
        check_warehouse(dag, employers, [FIRST_MONTH])


@check("hooks", "python")
def hooks(block: Block, env: DocEnv) -> None:
    """Execute the block with both default connections on the sandbox: real answers, money as Decimal."""
    env.sandbox_connections()
    namespace, _ = exec_block(block)
    assert isinstance(namespace["quota"], ProspectingQuota)
    assert isinstance(namespace["usage"], ApiQuotaUsage)
    assert isinstance(namespace["usage"].spend_amount, Decimal)
    requests_made = env.sandbox.stats()["requests"]
    assert requests_made["sonarly_quota"] == 1
    assert requests_made["indeed_quota_usage"] == 1


@check("test-connection", "python")
def connection_test_block(block: Block, env: DocEnv) -> None:
    """Execute the block with both connections on the sandbox: it prints True twice, only free calls, no secret."""
    env.sandbox_connections()
    _, printed = exec_block(block)
    lines = printed.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("True ") for line in lines), printed
    assert SONARLY_KEY not in printed and INDEED_SECRET not in printed
    requests_made = env.sandbox.stats()["requests"]
    assert requests_made["sonarly_accounts"] == 1 and requests_made["indeed_token"] == 1
    assert requests_made["sonarly_quota"] == 0 and requests_made["indeed_quota_usage"] == 0


@check("xcom-record", "json")
def xcom_record(block: Block, env: DocEnv) -> None:
    """Equal to what IndeedQuotaUsageOperator returns for that employer and month, extracted_at aside."""
    env.sandbox_connections()
    shown = json.loads(block.code)
    datetime.fromisoformat(shown["extracted_at"])
    operator = IndeedQuotaUsageOperator(task_id="doc_xcom", employer_id=shown["employer_id"], month=shown["month"])
    actual = operator.execute(context={})  # type: ignore[arg-type]
    assert set(actual) == set(shown)
    assert {**actual, "extracted_at": shown["extracted_at"]} == shown


@check("budget-dag", "python")
def budget_dag(block: Block, env: DocEnv) -> None:
    """
    Run the DAG with dag.test(), a local SMTP server behind ``smtp_default``, and the first employer of each check over
    budget and at 100 % of its API quota: that task fails, the others succeed, one token and one usage request each,
    and a task with an ``on_failure_callback`` sends one mail naming the employer and its breaches.
    """
    env.sandbox_connections()
    inbox = env.fixture("smtp_server")
    for dag in load_dags(env, block).values():
        tasks = tasks_of(dag, IndeedBudgetCheckOperator)
        employers = {task.task_id: employers_of(task) for task in tasks}
        for task in tasks:
            over, *within = employers[task.task_id]
            budget = Decimal(operator_arg(task, "budget"))
            env.sandbox.set_usage(over, spend=str(budget * 2 + 1), requests_count=3000, api_quota=3000)
            for employer in within:
                env.sandbox.set_usage(employer, spend="0", requests_count=0, api_quota=3000)
        dag_run = dag.test()
        assert dag_run.state == "failed", f"dag.test() of {dag.dag_id}: {dag_run.state}"
        mailed = [task for task in tasks if operator_arg(task, "on_failure_callback")]
        if not dag_test_callbacks_get_the_exception():  # Airflow 3.2: no {{ exception }} under dag.test()
            mailed = []
        assert len(inbox) == len(mailed), f"{len(inbox)} mails for {len(mailed)} notifying tasks"
        for task, mail in zip(mailed, inbox, strict=True):
            text = "".join(part.get_payload(decode=True).decode() for part in mail.walk() if not part.is_multipart())
            assert f"Indeed budget check of employer {employers[task.task_id][0]} for " in text, text
            assert "is over the budget of" in text, text
        for task in tasks:
            states = sorted((ti.map_index, ti.state) for ti in task_instances(dag_run, task.task_id))
            assert states[0][1] == "failed" and all(state == "success" for _, state in states[1:]), states
        stats = env.sandbox.stats()
        all_employers = [employer for names in employers.values() for employer in names]
        assert stats["tokens_issued"] == dict.fromkeys(all_employers, 1)
        assert stats["requests"]["indeed_quota_usage"] == len(all_employers)


@check("budget-breach-message", "text")
def budget_breach_message(block: Block, env: DocEnv) -> None:
    """
    Exactly what IndeedBudgetCheckOperator raises, with the limits of the page's budget-dag block, for the employer,
    month, instant, spend and requests the message quotes (the sandbox set to them, the clock travelled there).
    """
    import time_machine
    from airflow.sdk.exceptions import AirflowFailException

    text = " ".join(block.code.split())
    quoted = re.match(
        r"Indeed budget check of employer (\S+) for \d{6}: 1\) spend (\S+) .* expected by (\S+) "
        r".* (\d+) of (\d+) API requests used",
        text,
    )
    assert quoted, f"{block.where}: not a budget check message"
    employer, spend, moment, used, quota = quoted.groups()
    [dag] = load_dags(env, *blocks_where(lambda b: b.path == block.path and b.check == "budget-dag")).values()
    [task] = tasks_of(dag, IndeedBudgetCheckOperator)
    limits = ("month", "budget", "currency", "max_pace", "max_api_quota_used")
    env.sandbox_connections()
    with time_machine.travel(datetime.fromisoformat(moment), tick=False):
        env.sandbox.set_usage(employer, spend=spend, requests_count=int(used), api_quota=int(quota))
        operator = IndeedBudgetCheckOperator(
            task_id="doc_message", employer_id=employer, **{name: operator_arg(task, name) for name in limits}
        )
        with pytest.raises(AirflowFailException) as raised:
            operator.execute({"dag": dag})  # type: ignore[arg-type]
    assert str(raised.value) == text


@check("api-quota-gate-dag", "python")
def api_quota_gate_dag(block: Block, env: DocEnv) -> None:
    """Run the DAG with dag.test(), each gate's employer at 40 % of its API quota: one usage request, usage in XCom."""
    env.sandbox_connections()
    for dag in load_dags(env, block).values():
        sensors = tasks_of(dag, IndeedApiQuotaSensor)
        for sensor in sensors:
            env.sandbox.set_usage(sensor.employer_id or "emp-acme", requests_count=1200, api_quota=3000)
        dag_run = run_dag(dag)
        assert env.sandbox.requests_to("indeed_quota_usage") == len(sensors), "one check per gate"
        for sensor in sensors:
            usage = read_xcom(dag_run, sensor.task_id)
            assert (usage["requests_count"], usage["api_quota"], usage["requests_left"]) == (1200, 3000, 1800)


# ---------------------------------------------------------------------------------------------- SQL checks


def _ddl_matches(block: Block, dialect: str) -> None:
    """The block is, whitespace aside, the statement the operator runs (which the unit tests run or check)."""

    def normal(sql: str) -> str:
        return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", " ".join(sql.replace(";", " ").split())))

    table = re.search(r"CREATE TABLE IF NOT EXISTS (\S+?)\s*\(", block.code)
    assert table, f"{block.where}: not a CREATE TABLE IF NOT EXISTS statement"
    expected = create_table_sql(table[1], dialect)
    assert normal(block.code) == normal(expected), f"the operator runs on {dialect}:\n{expected}"


@check("ddl-postgresql", "sql")
def ddl_postgresql(block: Block, env: DocEnv) -> None:
    """Equal to create_table_sql(table, "postgresql"), which tests/unit/test_warehouse.py runs on PostgreSQL."""
    _ddl_matches(block, "postgresql")


@check("ddl-snowflake", "sql")
def ddl_snowflake(block: Block, env: DocEnv) -> None:
    """Equal to create_table_sql(table, "snowflake"), which tests/unit/test_warehouse_dialects.py checks."""
    _ddl_matches(block, "snowflake")


# ---------------------------------------------------------------------------------------------- shell


def command_lines(block: Block) -> Iterator[list[str]]:
    """The block's commands as argv lists: continuations joined, comments and blank lines dropped."""
    text = block.code.replace("\\\n", " ")
    for line in text.splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            yield argv


@check("shell", "bash")
def shell(block: Block, env: DocEnv) -> None:
    """Run each line through the handler of its command (SHELL_COMMANDS); a command no handler knows fails."""
    for argv in command_lines(block):
        for matches, handler in SHELL_COMMANDS:
            if matches(argv):
                handler(argv, block, env)
                break
        else:
            pytest.fail(f"{block.where}: no check knows the command {shlex.join(argv)!r}")


def _export(argv: list[str], block: Block, env: DocEnv) -> None:
    """``export NAME=value`` for connections, variables and Airflow settings."""
    assert len(argv) == 2 and "=" in argv[1], f"{block.where}: {shlex.join(argv)}"
    name, _, value = argv[1].partition("=")
    if name.startswith("AIRFLOW_CONN_"):
        _export_connection(name, value, block, env)
    elif name.startswith("AIRFLOW_VAR_"):
        from airflow.sdk import Variable

        env.monkeypatch.setenv(name, value)
        assert Variable.get(name.removeprefix("AIRFLOW_VAR_").lower(), deserialize_json=True) == json.loads(value)
    elif match := re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", name):
        from airflow.configuration import conf

        section, key = match[1].lower(), match[2].lower()
        assert conf.has_option(section, key), f"{block.where}: Airflow has no setting [{section}] {key}"
        env.monkeypatch.setenv(name, value)
        assert conf.get(section, key) == value
    else:
        pytest.fail(f"{block.where}: no check knows the variable {name}")


def _export_connection(name: str, value: str, block: Block, env: DocEnv) -> None:
    """Airflow reads the connection from the variable; its hook accepts it; on the sandbox its test passes."""
    from airflow.sdk import BaseHook

    if value.lstrip().startswith("{"):
        json.loads(value)  # the JSON form must be valid JSON, not just parseable by luck
    env.monkeypatch.setenv(name, env.localize(value))
    conn_id = name.removeprefix("AIRFLOW_CONN_").lower()
    conn = BaseHook.get_connection(conn_id)
    if conn.conn_type in ("sonarly", "indeed"):
        hook: Any = SonarlyHook(conn_id) if conn.conn_type == "sonarly" else IndeedHook(conn_id)
        assert hook.connection.password, f"{block.where}: {conn_id} has no secret"
        if conn.conn_type == "sonarly" and conn.extra_dejson.get("account_group_id"):
            assert hook.resolve_account_group_id() == conn.extra_dejson["account_group_id"]
        if conn.conn_type == "indeed":
            assert hook.connection.login, f"{block.where}: {conn_id} has no client id"
            assert hook.employer_id == conn.extra_dejson.get("employer_id")
        if DOC_SANDBOX.search(value):
            assert hook.base_url == env.sandbox_url
            ok, message = hook.test_connection()
            assert ok, message
        else:
            assert hook.base_url == hook.default_host, "the docs' real connections use the API's own host"
    else:
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        hook = get_db_hook(conn_id)
        assert isinstance(hook, DbApiHook)
        assert hook.dialect_name in ("postgresql", "sqlite"), f"{conn_id}: dialect {hook.dialect_name}"


def _make(argv: list[str], block: Block, env: DocEnv) -> None:
    """``make TARGET``: the Makefile has the target (``make -n`` succeeds; nothing is run)."""
    result = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{block.where}: make -n {' '.join(argv[1:])}: {result.stderr}"


def _pip_install(argv: list[str], block: Block, env: DocEnv) -> None:
    """
    ``pip install .``: the checkout builds into a wheel of this package that Airflow can discover.

    The wheel is built for real (``uv build``); its metadata must name the package, register the
    ``apache_airflow_provider`` entry point and ship ``py.typed``. A package name instead of a
    path must be this package's (for when it is published).
    """
    import zipfile

    from packaging.requirements import Requirement

    project = re.search(r'(?m)^name = "([^"]+)"', (REPO / "pyproject.toml").read_text())[1]  # type: ignore[index]
    targets = [arg for arg in argv[2:] if not arg.startswith("-")]
    if targets != ["."]:
        names = [Requirement(arg).name for arg in targets]
        assert names == [project], f"{block.where}: installs {names}, the package is {project}"
        return
    out = env.tmp_path / "wheel"
    uv = REPO / ".tools" / "bin" / "uv"
    result = subprocess.run(
        [str(uv), "build", "--wheel", "--quiet", "--out-dir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{block.where}: pip install . would fail to build: {result.stderr}"
    [wheel] = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert re.search(rf"(?m)^Name: {re.escape(project)}$", metadata), f"{block.where}: {wheel.name} is not {project}"
    assert "[apache_airflow_provider]" in entry_points and "get_provider_info" in entry_points
    assert "airflow_provider_quota/py.typed" in names


def _sandbox_command(argv: list[str], block: Block, env: DocEnv) -> None:
    """``python -m airflow_provider_quota.sandbox``: it starts (on a free port), both hooks' connection tests pass."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    args = [arg for arg in argv[3:] if arg != "&"]
    args = [port if args[i - 1 : i] == ["--port"] else arg for i, arg in enumerate(args)]
    args += [] if "--port" in args else ["--port", port]
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen([sys.executable, "-m", "airflow_provider_quota.sandbox", *args], cwd=REPO) as process:
        try:
            deadline = time.monotonic() + 120  # start-up bound, not a performance assertion
            while not _answers(f"{url}/_sandbox/stats"):
                assert process.poll() is None, f"{block.where}: the sandbox exited with {process.returncode}"
                assert time.monotonic() < deadline, f"{block.where}: the sandbox did not answer on {url}"
                time.sleep(0.2)
            sonarly_at(env.monkeypatch, url)
            indeed_at(env.monkeypatch, url)
            for hook in (SonarlyHook(), IndeedHook()):
                ok, message = hook.test_connection()
                assert ok, f"{block.where}: {message}"
        finally:
            process.terminate()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def _curl(argv: list[str], block: Block, env: DocEnv) -> None:
    """``curl``: run as written against the test sandbox; the answer is 2xx JSON."""
    urls = [arg for arg in argv[1:] if "://" in arg]
    assert urls and all(DOC_SANDBOX.search(url) for url in urls), f"{block.where}: curl to {urls}, not to the sandbox"
    done = subprocess.run(
        [*map(env.localize, argv), "--write-out", "\n%{http_code}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{block.where}: curl exited with {done.returncode}: {done.stderr}"
    body, _, status = done.stdout.rpartition("\n")
    assert status.startswith("2"), f"{block.where}: {status} {body}"
    json.loads(body)


def _airflow_cli(argv: list[str]) -> Any:
    from airflow.cli import cli_parser

    return cli_parser.get_parser().parse_args(argv[1:])


def _airflow_connections_add(argv: list[str], block: Block, env: DocEnv) -> None:
    """
    ``airflow connections add``: Airflow's CLI accepts it, and it keeps the key out of the audit log.

    Airflow's audit log masks ``--conn-password KEY``, ``--conn-json JSON`` and ``--conn-uri URI``
    but stores ``--conn-uri=URI`` and ``--conn-json=JSON`` as typed (measured by ``make integration``),
    and a URI needs the key URL-encoded: the docs use the first two forms only.
    """
    assert not any(arg.startswith(("--conn-uri", "--conn-json=")) for arg in argv), (
        f"{block.where}: define connections with --conn-json JSON or --conn-password, not {shlex.join(argv)}"
    )
    args = _airflow_cli(argv)
    if args.conn_json:
        fields = json.loads(args.conn_json)
        assert fields.get("password"), f"{block.where}: the JSON connection has no secret"
        conn_type = fields["conn_type"]
    else:
        assert args.conn_password, f"{block.where}: the connection has no --conn-password"
        conn_type = args.conn_type
    assert conn_type in ("sonarly", "indeed", "postgres", "mysql", "sqlite"), f"{block.where}: type {conn_type}"


def _airflow_service(argv: list[str], block: Block, env: DocEnv) -> None:
    """``airflow triggerer ...`` and other long-running services: Airflow's CLI accepts the options (nothing runs)."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = _airflow_cli(argv)
    except SystemExit:
        pytest.fail(f"{block.where}: Airflow's CLI refuses {shlex.join(argv)}: {stderr.getvalue().strip()}")
    assert callable(args.func), f"{block.where}: {shlex.join(argv)}"


def _airflow_dags_test(argv: list[str], block: Block, env: DocEnv) -> None:
    """``airflow dags test DAG_ID``: run by Airflow's CLI in-process, on the docs' DAG, against the sandbox."""
    args = _airflow_cli(argv)
    env.sandbox_connections()
    for dag in load_dags(env, block_defining_dag(args.dag_id, block)).values():
        env.sqlite_warehouse(*(conn_id for conn_id, _ in warehouse_targets(dag)))
    args.func(args)  # raises SystemExit when the run fails
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == args.dag_id).order_by(DagRun.id.desc()).limit(1).all()
        assert runs and runs[0].state == "success"


def _airflow_backfill_create(argv: list[str], block: Block, env: DocEnv) -> None:
    """``airflow backfill create``: a dry run on the docs' DAG lists one run per month, each extracting its own."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.backfill import ReprocessBehavior, _do_dry_run
    from airflow.utils.session import create_session

    env.fixture("airflow_db")
    args = _airflow_cli(argv)
    # The page describes a first backfill: runs left by other tests of this session would be skipped.
    from airflow.api.common.delete_dag import delete_dag
    from airflow.exceptions import DagNotFound

    with contextlib.suppress(DagNotFound):
        delete_dag(args.dag_id)
    load_dags(env, block_defining_dag(args.dag_id, block))
    DagBundlesManager().sync_bundles_to_db()
    bag = BundleDagBag(dag_folder=str(env.dags_folder), bundle_path=env.dags_folder, bundle_name="dags-folder")
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        infos = list(
            _do_dry_run(
                dag_id=args.dag_id,
                from_date=args.from_date,
                to_date=args.to_date,
                reverse=args.run_backwards,
                reprocess_behavior=ReprocessBehavior.NONE,
                session=session,
            )
        )
    months = [
        month_for_run(
            {  # type: ignore[typeddict-item]
                "data_interval_start": info.data_interval.start,
                "data_interval_end": info.data_interval.end,
                "logical_date": info.logical_date,
            }
        )
        for info in infos
    ]
    first, last = args.from_date.date().replace(day=1), args.to_date.date().replace(day=1)
    assert months == months_between(first, last), f"{block.where}: the runs extract {months}"
    assert months[0] >= FIRST_MONTH


#: Long-running Airflow commands a doc may show; their options are checked, nothing is started.
AIRFLOW_SERVICES = ("triggerer", "scheduler", "dag-processor", "api-server")

SHELL_COMMANDS: list[tuple[Callable[[list[str]], bool], Callable[[list[str], Block, DocEnv], None]]] = [
    (lambda argv: argv[0] == "export", _export),
    (lambda argv: argv[0] == "make", _make),
    (lambda argv: argv[:2] == ["pip", "install"], _pip_install),
    (
        lambda argv: argv[0] in ("python", "python3") and argv[1:3] == ["-m", "airflow_provider_quota.sandbox"],
        _sandbox_command,
    ),
    (lambda argv: argv[0] == "curl", _curl),
    (lambda argv: argv[:3] == ["airflow", "dags", "test"], _airflow_dags_test),
    (lambda argv: argv[:3] == ["airflow", "backfill", "create"], _airflow_backfill_create),
    (lambda argv: argv[:3] == ["airflow", "connections", "add"], _airflow_connections_add),
    (lambda argv: argv[:2] in (["airflow", name] for name in AIRFLOW_SERVICES), _airflow_service),
]

#: Checks that run a DAG writing to a warehouse (the producers an asset-schedule block refers to).
SPEND_DAG_CHECKS = ("spend-dag-sqlite", "spend-dag-postgres")
