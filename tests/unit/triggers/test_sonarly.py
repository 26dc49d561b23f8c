"""SonarlyQuotaResetTrigger against the sandbox: serialization, waits, failures, many triggers."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger
from tests.conftest import SONARLY_KEY, first_event, time_travel

START = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)


def make_trigger(**kwargs: Any) -> SonarlyQuotaResetTrigger:
    params: dict[str, Any] = {
        "sonarly_conn_id": "sonarly_default",
        "account_group_id": "ag_sandbox",
        "list_type": "LINKEDIN_CLASSIC",
        "min_remaining": 1,
        "reset_at": START + timedelta(hours=1),
        "poke_interval": 60.0,
        "jitter": 2.0,
    }
    params.update(kwargs)
    return SonarlyQuotaResetTrigger(**params)


@pytest.fixture
def traveller(monkeypatch):
    """Time travel: every trigger sleep moves the clock (and the sandbox's) instead of waiting."""
    with time_travel(monkeypatch, START) as machine:
        yield machine


def test_serialize_round_trip_holds_no_secret(sonarly_conn):
    trigger = make_trigger(hook_params={"read_timeout": 5.0, "max_attempts": 2})
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_quota.triggers.sonarly.SonarlyQuotaResetTrigger"
    assert kwargs == {
        "sonarly_conn_id": "sonarly_default",
        "account_group_id": "ag_sandbox",
        "list_type": "LINKEDIN_CLASSIC",
        "min_remaining": 1,
        "reset_at": START + timedelta(hours=1),
        "poke_interval": 60.0,
        "jitter": 2.0,
        "hook_params": {"read_timeout": 5.0, "max_attempts": 2},
        "deadline": None,
    }
    rebuilt = SonarlyQuotaResetTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)

    from airflow.sdk.serde import deserialize, serialize

    stored = json.dumps(serialize(kwargs))  # what the metadata database keeps
    assert deserialize(json.loads(stored)) == kwargs
    assert SONARLY_KEY not in stored and SONARLY_KEY not in repr(trigger)
    assert "Bearer" not in stored and "password" not in stored


def test_sleeps_until_reset_then_one_check(sonarly_conn, sandbox, traveller):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=3600)
    event = asyncio.run(first_event(make_trigger()))
    assert event["status"] == "success" and event["checks"] == 1
    assert event["xcom"]["remaining"] == 25
    assert 3600.5 <= sum(traveller.slept) <= 3602.6
    assert max(traveller.slept) <= 600  # slept in steps, re-reading the wall clock
    assert sandbox.requests_to("sonarly_quota") == 1


def test_reset_moved_waits_for_the_new_reset(sonarly_conn, sandbox, traveller):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=2 * 3600)  # the API moved it to +2 h
    event = asyncio.run(first_event(make_trigger(reset_at=START + timedelta(hours=1))))
    assert event["status"] == "success" and event["checks"] == 2
    assert 7200 < sum(traveller.slept) <= 7205.2
    assert sandbox.requests_to("sonarly_quota") == 2


@pytest.mark.parametrize("reset_at", [None, "not-a-date", "2026-05-04T06:00:00Z"])
def test_unknown_or_past_reset_falls_back_to_poke_interval(sonarly_conn, sandbox, traveller, reset_at):
    sandbox.add_fault("patch", endpoint="sonarly_quota", count=3, patch={"resetAt": reset_at, "exhausted": True})
    event = asyncio.run(first_event(make_trigger(reset_at=None, poke_interval=45.0)))
    assert event["status"] == "success" and event["checks"] == 4
    assert sandbox.requests_to("sonarly_quota") == 4
    assert sum(traveller.slept) == pytest.approx(4 * 45, abs=1)  # never a tight loop


def test_tiny_poke_interval_still_sleeps(sonarly_conn, sandbox, traveller):
    sandbox.add_fault("patch", endpoint="sonarly_quota", count=2, patch={"resetAt": None, "exhausted": True})
    event = asyncio.run(first_event(make_trigger(reset_at=None, poke_interval=0.0)))
    assert event["status"] == "success"
    assert len(traveller.slept) == 3 and all(0.9 < seconds <= 1.0 for seconds in traveller.slept)  # 1 s floor


def test_permanent_error_ends_at_once(sonarly_conn, sandbox, traveller, recorded_sleeps):
    sandbox.add_fault("status", status=403, endpoint="sonarly_quota", count=None)
    event = asyncio.run(first_event(make_trigger()))
    assert event["status"] == "error" and event["fail_fast"] is True
    assert "HTTP 403" in event["message"]
    assert sandbox.requests_to("sonarly_quota") == 1
    assert recorded_sleeps == []


def test_consecutive_failures_are_capped_and_back_off(sonarly_conn, sandbox, traveller, recorded_sleeps):
    sandbox.add_fault("500", endpoint="sonarly_quota", count=None)
    trigger = make_trigger(reset_at=None, poke_interval=60.0, hook_params={"max_attempts": 2})
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "error" and event["fail_fast"] is False
    assert "failure 3 in a row" in event["message"]
    assert sandbox.requests_to("sonarly_quota") == 3 * 2  # 3 checks, each with the hook's 2 attempts
    assert len(recorded_sleeps) == 3  # the hook's backoffs
    assert traveller.slept == pytest.approx([60.0, 120.0, 240.0], abs=0.1)  # the trigger's own backoff doubles


def test_transient_failure_then_recovery(sonarly_conn, sandbox, traveller, recorded_sleeps):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=3600)
    sandbox.add_fault("503", endpoint="sonarly_quota", count=2)
    event = asyncio.run(first_event(make_trigger(hook_params={"max_attempts": 2})))
    assert event["status"] == "success" and event["checks"] == 2
    assert sandbox.requests_to("sonarly_quota") == 3


def test_many_triggers_in_one_loop_wake_on_time(sonarly_conn, sandbox):
    """300 triggers on one event loop, real time: all wake after the reset and each makes one request."""
    count = 300
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=1.0)
    reset_at = datetime.now(timezone.utc) + timedelta(seconds=1.0)

    async def main() -> list[tuple[dict[str, Any], float]]:
        async def one() -> tuple[dict[str, Any], float]:
            event = await first_event(make_trigger(reset_at=reset_at, jitter=1.0))
            return event, time.time()

        return await asyncio.gather(*(one() for _ in range(count)))

    results = asyncio.run(main())
    assert all(event["status"] == "success" and event["checks"] == 1 for event, _ in results)
    assert all(fired >= reset_at.timestamp() + 0.5 for _, fired in results)
    assert sandbox.requests_to("sonarly_quota") == count


def test_a_retry_after_too_long_for_the_hook_is_honoured_by_the_trigger(sonarly_conn, sandbox, traveller):
    sandbox.add_fault("429", endpoint="sonarly_quota", count=1, retry_after="1800")  # 30 min > max_retry_wait
    trigger = make_trigger(reset_at=None, poke_interval=60.0, hook_params={"max_retry_wait": 300})
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "success" and event["checks"] == 2
    assert sandbox.requests_to("sonarly_quota") == 2  # the hook did not wait 30 min in place...
    assert traveller.slept[0] == pytest.approx(60.0, abs=0.1)
    assert 1799 <= sum(traveller.slept[1:]) <= 1801  # ...the trigger did, without holding anything


def test_requests_in_flight_on_one_loop_are_capped(sonarly_conn, sandbox, monkeypatch):
    """Thousands of triggers waking together queue outside httpx's pool, at most ASYNC_MAX_CONNECTIONS at once."""
    import httpx

    from airflow_provider_quota.hooks.base import ASYNC_MAX_CONNECTIONS
    from airflow_provider_quota.hooks.sonarly import SonarlyHook

    sandbox.add_fault("stall", endpoint="sonarly_quota", count=None, seconds=0.2)
    in_flight = peak = 0
    original = httpx.AsyncClient.send

    async def counting(self, *args, **kwargs):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(self, *args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(httpx.AsyncClient, "send", counting)

    async def main() -> list[Any]:
        return await asyncio.gather(*(SonarlyHook().aget_prospecting_quota() for _ in range(4 * ASYNC_MAX_CONNECTIONS)))

    quotas = asyncio.run(main())
    assert len(quotas) == 4 * ASYNC_MAX_CONNECTIONS and all(quota.limit == 25 for quota in quotas)
    assert peak == ASYNC_MAX_CONNECTIONS
    assert sandbox.requests_to("sonarly_quota") == 4 * ASYNC_MAX_CONNECTIONS
