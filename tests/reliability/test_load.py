"""
Load under faults: many deferred gates on one event loop, and a large backfill, both against a
sandbox answering about 10% of requests with 429 or 500.

``QUOTA_RELIABILITY_FULL=1`` (set by ``python -m tests.reliability.report``) runs the backfill at
its full size, 24 months x 20 employers; ``make test`` runs a 24 months x 5 employers variant.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import time_machine

from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger
from airflow_provider_quota.utils.warehouse import get_db_hook
from tests.conftest import WAREHOUSES, warehouse_conn_id
from tests.reliability.conftest import FULL, START, expected_usage, months_between, warehouse_keys

TRIGGERS = 200
MONTHS = 24
EMPLOYERS = 20 if FULL else 5
WORKER_SLOTS = 4


def about_ten_percent_429_and_500(sandbox: Any, endpoint: str) -> None:
    """P(429) = 5%, P(500) = 5% of the rest: 9.75% of the answers are faults."""
    sandbox.add_fault("429", endpoint=endpoint, count=None, probability=0.05, retry_after="1")
    sandbox.add_fault("500", endpoint=endpoint, count=None, probability=0.05)


@pytest.mark.load
def test_200_deferred_gates_on_one_event_loop_all_succeed(sonarly_conn, sandbox, recorded_sleeps, figures):
    """Real time: every trigger sleeps about 1.5 s until the reset, then checks once through the faults."""
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=1.0)
    reset_at = datetime.now(timezone.utc) + timedelta(seconds=1.0)
    about_ten_percent_429_and_500(sandbox, "sonarly_quota")

    async def all_triggers() -> list[dict[str, Any]]:
        async def one() -> dict[str, Any]:
            trigger = SonarlyQuotaResetTrigger(
                sonarly_conn_id="sonarly_default",
                account_group_id="ag_sandbox",
                list_type="LINKEDIN_CLASSIC",
                min_remaining=1,
                reset_at=reset_at,
                poke_interval=1.0,
                jitter=0.5,
            )
            async for event in trigger.run():
                return dict(event.payload)
            raise AssertionError("the trigger ended without an event")

        return await asyncio.gather(*(one() for _ in range(TRIGGERS)))

    events = asyncio.run(all_triggers())
    for event in events:
        figures.event(event, status="success")
        assert event["xcom"]["remaining"] == 25
    stats = sandbox.stats()
    faults = sum(stats["faults_injected"].values())
    assert faults > 0  # the faults did happen...
    assert stats["requests"]["sonarly_quota"] == TRIGGERS + faults  # ...and each gate got exactly one good answer


@pytest.fixture(params=WAREHOUSES)
def db(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    conn_id = warehouse_conn_id(request)
    table = f"load_{uuid.uuid4().hex[:10]}"
    yield conn_id, table
    get_db_hook(conn_id).run(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.load
def test_backfill_of_24_months_for_many_employers_under_faults_loses_and_duplicates_nothing(
    indeed_conn, sandbox, db, recorded_sleeps, figures
):
    conn_id, table = db
    months = months_between("122024", MONTHS)  # 122024 .. 112026, the current month at START
    employers = [f"emp-load-{index:02d}" for index in range(EMPLOYERS)]
    about_ten_percent_429_and_500(sandbox, "indeed_quota_usage")
    with time_machine.travel(START, tick=True):
        assert months[-1] == "112026"
        operators = [
            IndeedQuotaUsageOperator(
                task_id=f"extract_{employer}", employer_id=employer, month=months, sql_conn_id=conn_id, table=table
            )
            for employer in employers
        ]
        with ThreadPoolExecutor(WORKER_SLOTS) as slots:  # mapped tasks sharing a worker's slots
            results = list(slots.map(lambda operator: figures.task(partial(operator.execute, {})), operators))
        right = {(employer, month): expected_usage(employer, month) for employer in employers for month in months}
    assert [len(records) for records in results] == [MONTHS] * EMPLOYERS
    stats = sandbox.stats()
    faults = sum(stats["faults_injected"].values())
    assert faults > 0
    assert stats["requests"]["indeed_quota_usage"] == MONTHS * EMPLOYERS + faults  # one good answer per month
    assert stats["requests"]["indeed_token"] == EMPLOYERS  # one token per employer...
    assert stats["tokens_issued"] == dict.fromkeys(employers, 1)  # ...for the whole backfill
    assert figures.rows(list(right), warehouse_keys(conn_id, table)) == (0, 0)
    stored = get_db_hook(conn_id).get_records(
        f"SELECT employer_id, month, api_quota, requests_count, spend_amount, currency_code FROM {table}"
    )
    wrong = [
        (employer, month)
        for employer, month, quota, count, spend, currency in stored
        if (int(quota), int(count), Decimal(str(spend)), currency)
        != tuple(
            right[(employer, month)][name] for name in ("api_quota", "requests_count", "spend_amount", "currency_code")
        )
    ]
    assert wrong == []  # every stored figure is the API's, to the last digit
