"""IndeedApiQuotaTrigger against the sandbox: serialization, the month rollover in time travel, failures."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_quota.triggers.indeed import IndeedApiQuotaTrigger
from tests.conftest import INDEED_SECRET, first_event, time_travel

START = datetime(2026, 5, 20, 9, 0, tzinfo=timezone.utc)
JUNE = datetime(2026, 6, 1, tzinfo=timezone.utc)
WAIT = (JUNE - START).total_seconds()
#: What the API answers for emp-acme in May, its quota spent.
MAY_SPENT = {"mmyyyy": "052026", "apiQuota": 3000, "apiUsage": [{"requestsCount": 2900}]}


def make_trigger(**kwargs: Any) -> IndeedApiQuotaTrigger:
    params: dict[str, Any] = {
        "indeed_conn_id": "indeed_default",
        "employer_id": "emp-acme",
        "max_used": "0.95",
        "min_requests_left": 1,
        "resets_at": JUNE,
        "poke_interval": 60.0,
        "jitter": 2.0,
    }
    params.update(kwargs)
    return IndeedApiQuotaTrigger(**params)


@pytest.fixture
def traveller(monkeypatch, indeed_conn, sandbox):
    """Time travel from 20 May 2026, emp-acme's May quota spent; every trigger sleep moves the clock."""
    with time_travel(monkeypatch, START) as machine:
        sandbox.set_usage("emp-acme", requests_count=2900, api_quota=3000)
        yield machine


def test_serialize_round_trip_holds_plain_json_and_no_secret(indeed_conn):
    trigger = make_trigger(hook_params={"read_timeout": 5.0}, deadline=JUNE + timedelta(days=2))
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_quota.triggers.indeed.IndeedApiQuotaTrigger"
    assert kwargs == {
        "indeed_conn_id": "indeed_default",
        "employer_id": "emp-acme",
        "max_used": "0.95",
        "min_requests_left": 1,
        "resets_at": JUNE,
        "poke_interval": 60.0,
        "jitter": 2.0,
        "hook_params": {"read_timeout": 5.0},
        "deadline": JUNE + timedelta(days=2),
    }
    assert IndeedApiQuotaTrigger(**kwargs).serialize() == (classpath, kwargs)

    from airflow.sdk.serde import deserialize, serialize

    stored = json.dumps(serialize(kwargs))
    assert deserialize(json.loads(stored)) == kwargs
    assert INDEED_SECRET not in stored and INDEED_SECRET not in repr(trigger)


def test_sleeps_until_the_month_rolls_over_then_checks_once(sandbox, traveller):
    event = asyncio.run(first_event(make_trigger()))
    assert event["status"] == "success" and event["checks"] == 1
    assert (
        event["xcom"]["month"] == "062026"
        and event["xcom"]["requests_left"] == event["xcom"]["api_quota"] - (event["xcom"]["requests_count"])
    )
    assert WAIT < sum(traveller.slept) <= WAIT + 2.6
    assert max(traveller.slept) <= 600
    assert sandbox.requests_to("indeed_quota_usage") == 1


def test_a_quota_still_spent_after_the_rollover_waits_for_the_next_one(sandbox, traveller):
    sandbox.set_usage("emp-acme", month="062026", requests_count=3000, api_quota=3000)  # June spent too
    event = asyncio.run(first_event(make_trigger()))
    assert event["status"] == "success" and event["checks"] == 2
    assert event["xcom"]["month"] == "072026"
    july = datetime(2026, 7, 1, tzinfo=timezone.utc)
    assert (july - START).total_seconds() < sum(traveller.slept) <= (july - START).total_seconds() + 5.2
    assert sandbox.requests_to("indeed_quota_usage") == 2


def test_an_api_still_in_the_old_month_is_checked_again_after_poke_interval(sandbox, traveller):
    # The API's clock lags: just after the rollover it still answers May, spent.
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", count=2, patch=MAY_SPENT)
    event = asyncio.run(first_event(make_trigger(poke_interval=300.0)))
    assert event["status"] == "success" and event["checks"] == 3
    assert sum(traveller.slept) == pytest.approx(WAIT + 2 * 300, abs=3)  # never a tight loop
    assert sandbox.requests_to("indeed_quota_usage") == 3


def test_a_rollover_already_past_at_start_is_checked_at_once(sandbox, traveller):
    traveller.move_to(JUNE + timedelta(hours=5))  # a triggerer outage over the rollover
    event = asyncio.run(first_event(make_trigger()))
    assert event["status"] == "success" and event["checks"] == 1
    assert traveller.slept == []


def test_a_rollover_after_the_deadline_is_a_timeout_event_without_a_request(sandbox, traveller):
    event = asyncio.run(first_event(make_trigger(deadline=START + timedelta(days=3))))
    assert event["status"] == "timeout" and event["checks"] == 0
    assert (
        "the next useful check of the Indeed API quota of employer emp-acme is at 2026-06-01T00:00" in event["message"]
    )
    assert sandbox.requests_to("indeed_quota_usage") == 0


def test_permanent_error_ends_at_once(sandbox, traveller, recorded_sleeps):
    sandbox.add_fault("status", status=404, endpoint="indeed_quota_usage", count=None)
    event = asyncio.run(first_event(make_trigger()))
    assert event["status"] == "error" and event["fail_fast"] is True and "HTTP 404" in event["message"]
    assert sandbox.requests_to("indeed_quota_usage") == 1 and recorded_sleeps == []


def test_transient_failures_back_off_then_recover_or_give_up(sandbox, traveller, recorded_sleeps):
    sandbox.add_fault("503", endpoint="indeed_quota_usage", count=2)
    event = asyncio.run(first_event(make_trigger(hook_params={"max_attempts": 1})))
    assert event["status"] == "success" and event["checks"] == 3
    assert traveller.slept[-2:] == pytest.approx([120.0, 240.0], abs=0.1)  # poke_interval x 2 per failure

    sandbox.add_fault("500", endpoint="indeed_quota_usage", count=None)
    event = asyncio.run(first_event(make_trigger(resets_at=None, hook_params={"max_attempts": 1})))
    assert event["status"] == "error" and event["fail_fast"] is False
    assert "failure 3 in a row" in event["message"]


def test_min_requests_left_above_the_quota_ends_with_a_permanent_error(sandbox, traveller):
    event = asyncio.run(first_event(make_trigger(min_requests_left=5000)))
    assert event["status"] == "error" and event["fail_fast"] is True
    assert "min_requests_left=5000 can never be met" in event["message"]
