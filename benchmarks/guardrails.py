"""
Indeed guardrails: requests of a budget check over E employers, and of a month-long API-quota wait.

``python -m benchmarks.guardrails --employers 10 --wait-days 31``

The sandbox runs in a thread of this process, so that time-machine moves its clock too.

- Budget check of E employers, each task on a fresh worker (empty token cache).
  Project: ``IndeedBudgetCheckOperator(employer_id=e, month="current", budget, currency, max_pace,
  max_api_quota_used)``. Anchor: the hand-written ``@task`` of the extraction benchmark
  (:func:`benchmarks.extraction.anchor_task`: one token, one usage request), comparing the spend by hand.
- A wait for the API quota from the first second of May 2026 (``--wait-days`` before the rollover)
  until June, the quota spent. Project: ``IndeedApiQuotaSensor(deferrable=True)``: ``execute``
  checks once and defers, the trigger (on a triggerer: its own token) sleeps until the rollover,
  checks once, ``execute_complete`` returns. Anchor: ``PythonSensor(mode="reschedule",
  poke_interval=3600)`` whose callable is that ``@task`` body (each reschedule is a new try: a new
  token), run here in poke mode with the same pokes.
"""

from __future__ import annotations

import argparse
import types
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from benchmarks.common import (
    INDEED_CLIENT_ID,
    INDEED_SECRET,
    airflow_home,
    define_connections,
    emit,
    quiet_logging,
    run_trigger_in_simulated_time,
)
from benchmarks.common import set_connection as define_connection

JUNE = datetime(2026, 6, 1, tzinfo=timezone.utc)
BUDGET = Decimal(20000)
POKE_INTERVAL = 3600


def fresh_worker() -> None:
    """Forget the process's Indeed tokens, as a new worker or triggerer process would start."""
    from airflow_provider_quota.hooks import indeed

    indeed._TOKENS.clear()


def requests_made(control: Any) -> dict[str, int]:
    counts = control.stats()["requests"]
    return {"token_requests": counts["indeed_token"], "usage_requests": counts["indeed_quota_usage"]}


def budget_checks(control: Any, employer_ids: list[str]) -> dict[str, Any]:
    from airflow_provider_quota.operators.indeed import IndeedBudgetCheckOperator
    from benchmarks.extraction import anchor_task

    results: dict[str, Any] = {}
    for side in ("project", "anchor"):
        control.reset()
        for employer_id in employer_ids:
            control.set_usage(employer_id, spend="1000", requests_count=100, api_quota=3000)
        for employer_id in employer_ids:
            fresh_worker()
            if side == "project":
                operator = IndeedBudgetCheckOperator(
                    task_id="check_budget",
                    employer_id=employer_id,
                    month="current",
                    budget=str(BUDGET),
                    currency="USD",
                    max_pace="1.2",
                    max_api_quota_used="0.9",
                )
                assert operator.execute({})["breaches"] == []  # type: ignore[arg-type]
            else:
                [record] = anchor_task(employer_id, [None])  # type: ignore[list-item]
                assert record["spend_amount"] <= BUDGET
                assert record["requests_count"] < 0.9 * record["api_quota"]
        results[side] = requests_made(control)
    return results


def quota_wait(control: Any, traveller: Any, start: datetime) -> dict[str, Any]:
    from airflow.providers.standard.sensors.python import PythonSensor
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_quota.sensors.indeed import IndeedApiQuotaSensor
    from benchmarks.extraction import anchor_task

    def spend_the_quota() -> None:
        control.reset()
        control.set_usage("emp-acme", month="052026", requests_count=2900, api_quota=3000)
        control.set_usage("emp-acme", month="062026", requests_count=0, api_quota=3000)
        traveller.move_to(start)
        fresh_worker()

    results: dict[str, Any] = {}
    spend_the_quota()
    sensor = IndeedApiQuotaSensor(task_id="gate", employer_id="emp-acme", deferrable=True, timeout=32 * 86400)
    try:
        sensor.execute({})
        raise RuntimeError("the quota was not spent: the sensor did not defer")
    except TaskDeferred as deferred:
        trigger = deferred.trigger
    fresh_worker()  # the triggerer is another process

    event = run_trigger_in_simulated_time(trigger, traveller)
    assert sensor.execute_complete({}, event)["month"] == "062026"
    results["project"] = requests_made(control)

    spend_the_quota()

    def quota_left() -> bool:
        [record] = anchor_task("emp-acme", [None])  # type: ignore[list-item]
        return bool(record["requests_count"] < Decimal("0.95") * record["api_quota"])

    anchor = PythonSensor(task_id="gate", python_callable=quota_left, poke_interval=POKE_INTERVAL, timeout=32 * 86400)
    anchor.execute({})
    results["anchor"] = requests_made(control)
    return results


def main(employer_count: int, wait_days: float) -> dict[str, Any]:
    import time_machine

    from airflow_provider_quota.sandbox import SandboxClient, SandboxServer

    start = JUNE - timedelta(days=wait_days) + timedelta(seconds=1)
    with SandboxServer() as server:
        define_connections(server.url)
        define_connection("indeed_app", conn_type="generic", login=INDEED_CLIENT_ID, password=INDEED_SECRET)
        control = SandboxClient(server.url)
        with time_machine.travel(datetime(2026, 5, 16, 12, tzinfo=timezone.utc), tick=True) as traveller:
            budget = budget_checks(control, [f"emp-bench-{index:02d}" for index in range(employer_count)])
            import airflow.sdk.bases.sensor as sensor_module

            monotonic = [0.0]

            def sleep(seconds: float) -> None:
                monotonic[0] += seconds
                traveller.shift(seconds)

            real_time = sensor_module.time
            sensor_module.time = types.SimpleNamespace(sleep=sleep, monotonic=lambda: monotonic[0])  # type: ignore[assignment]
            try:
                wait = quota_wait(control, traveller, start)
            finally:
                sensor_module.time = real_time
    return {"employers": employer_count, "wait_days": wait_days, "budget": budget, "wait": wait}


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--employers", type=int, default=10)
    parser.add_argument("--wait-days", type=float, default=31.0, help="days from the first check to the rollover")
    args = parser.parse_args()
    airflow_home()
    quiet_logging()
    emit(main(args.employers, args.wait_days))


if __name__ == "__main__":
    cli()
