"""IndeedApiQuotaSensor in poke, reschedule and deferrable mode, against the sandbox, across month boundaries."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from airflow_provider_quota.sensors.indeed import IndeedApiQuotaSensor
from airflow_provider_quota.triggers.indeed import IndeedApiQuotaTrigger
from tests.conftest import first_event, indeed_at, time_travel
from tests.unit.sensors.test_sonarly import FakeTaskInstance

START = datetime(2026, 5, 20, 9, 0, tzinfo=timezone.utc)
JUNE = datetime(2026, 6, 1, tzinfo=timezone.utc)
MODES = [("poke", False), ("reschedule", False), ("poke", True)]


def make_sensor(**kwargs: Any) -> IndeedApiQuotaSensor:
    kwargs.setdefault("poke_interval", 60)
    kwargs.setdefault("timeout", 32 * 24 * 3600)
    kwargs.setdefault("jitter", 2.0)
    return IndeedApiQuotaSensor(task_id="wait_for_api_quota", **kwargs)


@pytest.fixture
def clock(monkeypatch, indeed_conn):
    """Travel in time from 20 May 2026; the sensor's and the trigger's sleeps move the clock (the sandbox's too)."""
    with time_travel(monkeypatch, START) as traveller:
        yield traveller


def spend_the_quota(sandbox, requests_count: int = 2900, **fields: Any) -> None:
    """emp-acme has used ``requests_count`` of 3000 requests in May; June starts fresh."""
    sandbox.set_usage("emp-acme", month="052026", requests_count=requests_count, api_quota=3000, **fields)
    sandbox.set_usage("emp-acme", month="062026", requests_count=0, api_quota=3000)


@pytest.mark.parametrize(("mode", "deferrable"), MODES)
def test_usable_quota_passes_at_the_first_check_with_the_usage(clock, sandbox, mode, deferrable):
    sandbox.set_usage("emp-acme", requests_count=1200, api_quota=3000)
    result = make_sensor(mode=mode, deferrable=deferrable).execute({"ti": FakeTaskInstance()})
    assert (result["month"], result["requests_count"], result["api_quota"], result["requests_left"]) == (
        "052026",
        1200,
        3000,
        1800,
    )
    assert result["employer_id"] == "emp-acme" and isinstance(result["spend_amount"], str)
    assert sandbox.requests_to("indeed_quota_usage") == 1
    assert sandbox.recent_requests()[-1]["query"] == ""  # the API's current month


@pytest.mark.parametrize(("requests_count", "held"), [(2849, False), (2850, True)])
def test_held_at_or_above_max_used(clock, sandbox, requests_count, held):
    spend_the_quota(sandbox, requests_count)
    result = make_sensor(max_used="0.95").execute({})
    assert result["month"] == ("062026" if held else "052026")
    assert sandbox.requests_to("indeed_quota_usage") == (2 if held else 1)


def test_held_while_fewer_than_min_requests_left_remain(clock, sandbox):
    spend_the_quota(sandbox, 2990)  # 10 left
    assert make_sensor(max_used=1, min_requests_left=10).execute({})["month"] == "052026"
    assert make_sensor(max_used=1, min_requests_left="11").execute({})["month"] == "062026"


def test_poke_mode_sleeps_until_the_month_rolls_over_then_checks_once(clock, sandbox):
    spend_the_quota(sandbox)
    result = make_sensor(mode="poke").execute({})
    assert (result["month"], result["requests_left"]) == ("062026", 3000)
    wait = (JUNE - START).total_seconds()
    assert len(clock.slept) == 1 and wait < clock.slept[0] <= wait + 2.5  # grace + jitter
    assert sandbox.requests_to("indeed_quota_usage") == 2


def test_reschedule_mode_reschedules_to_the_first_instant_of_next_month(clock, sandbox):
    spend_the_quota(sandbox)
    ti = FakeTaskInstance()
    with pytest.raises(AirflowRescheduleException) as caught:
        make_sensor(mode="reschedule").execute({"ti": ti})
    assert JUNE < caught.value.reschedule_date <= JUNE + timedelta(seconds=2.5)
    ti.first_reschedule_date = START
    clock.move_to(caught.value.reschedule_date)
    assert make_sensor(mode="reschedule").execute({"ti": ti})["month"] == "062026"
    assert sandbox.requests_to("indeed_quota_usage") == 2


@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 5, 1, 0, 0, 1, tzinfo=timezone.utc),  # a whole month
        START,
        datetime(2026, 5, 31, 23, 59, tzinfo=timezone.utc),  # a minute
    ],
)
def test_deferred_wait_across_the_month_boundary_costs_two_requests(clock, sandbox, start):
    clock.move_to(start)
    spend_the_quota(sandbox)
    sensor = make_sensor(deferrable=True)
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute({})
    trigger = caught.value.trigger
    assert isinstance(trigger, IndeedApiQuotaTrigger) and caught.value.method_name == "execute_complete"
    assert (trigger.employer_id, trigger.max_used, trigger.min_requests_left, trigger.resets_at) == (
        "emp-acme",
        "0.95",
        1,
        JUNE,
    )
    assert trigger.deadline == sensor._started_at + timedelta(days=32)

    event = asyncio.run(first_event(trigger))
    assert event["status"] == "success" and event["checks"] == 1
    assert clock.slept and max(clock.slept) <= 600  # in steps, re-reading the wall clock
    result = sensor.execute_complete({}, event)
    assert (result["month"], result["requests_left"]) == ("062026", 3000)
    assert sandbox.requests_to("indeed_quota_usage") == 2


@pytest.mark.parametrize(("mode", "deferrable"), MODES)
def test_a_rollover_after_the_timeout_ends_at_once_without_another_request(clock, sandbox, mode, deferrable):
    spend_the_quota(sandbox)
    context = {"ti": FakeTaskInstance()}
    with pytest.raises(AirflowSensorTimeout, match=r"resets at 2026-06-01T00:00:00\+00:00, after the sensor's timeout"):
        make_sensor(mode=mode, deferrable=deferrable, timeout=24 * 3600).execute(context)
    with pytest.raises(AirflowSkipException, match="soft_fail"):
        make_sensor(mode=mode, deferrable=deferrable, timeout=24 * 3600, soft_fail=True).execute(context)
    assert clock.slept == []
    assert sandbox.requests_to("indeed_quota_usage") == 2  # one check each, no wait


@pytest.mark.parametrize(("mode", "deferrable"), MODES)
def test_a_bad_client_secret_fails_at_once_without_waiting(monkeypatch, sandbox_server, sandbox, mode, deferrable):
    indeed_at(monkeypatch, sandbox_server.url, password="wrong-secret")
    with pytest.raises(AirflowFailException, match="HTTP 401 invalid_client"):
        make_sensor(mode=mode, deferrable=deferrable).execute({"ti": FakeTaskInstance()})
    with pytest.raises(AirflowSkipException, match="soft_fail"):
        make_sensor(mode=mode, deferrable=deferrable, soft_fail=True).execute({"ti": FakeTaskInstance()})
    assert sandbox.requests_to("indeed_quota_usage") == 0


def test_a_permanent_error_while_deferred_fails_fast(clock, sandbox):
    spend_the_quota(sandbox)
    sensor = make_sensor(deferrable=True)
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute({})
    sandbox.add_fault("status", status=403, endpoint="indeed_quota_usage")
    event = asyncio.run(first_event(caught.value.trigger))
    assert event["status"] == "error" and event["fail_fast"] is True
    with pytest.raises(AirflowFailException, match="HTTP 403"):
        sensor.execute_complete({}, event)


@pytest.mark.parametrize(("mode", "deferrable"), MODES)
def test_min_requests_left_above_the_quota_fails_at_the_first_check(clock, sandbox, mode, deferrable):
    sandbox.set_usage("emp-acme", requests_count=0, api_quota=3000)
    with pytest.raises(AirflowFailException, match=r"min_requests_left=3001 can never be met: .* apiQuota is 3000"):
        make_sensor(min_requests_left=3001, mode=mode, deferrable=deferrable).execute({"ti": FakeTaskInstance()})
    assert sandbox.requests_to("indeed_quota_usage") == 1


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"max_used": "0"}, "max_used must be above 0 and at most 1"),
        ({"max_used": 1.01}, "max_used must be above 0 and at most 1"),
        ({"max_used": "NaN"}, "max_used must be a number"),
        ({"min_requests_left": "-1"}, "min_requests_left must be a non-negative integer"),
        ({"min_requests_left": True}, "min_requests_left must be a non-negative integer"),
    ],
)
def test_bad_thresholds_fail_before_any_request(indeed_conn, sandbox, kwargs, problem):
    for deferrable in (False, True):
        with pytest.raises(AirflowFailException, match=problem):
            make_sensor(deferrable=deferrable, **kwargs).execute({})
    assert sandbox.stats()["total_requests"] == 0


def test_template_fields():
    assert set(IndeedApiQuotaSensor.template_fields) == {
        "indeed_conn_id",
        "employer_id",
        "max_used",
        "min_requests_left",
    }
