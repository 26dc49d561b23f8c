"""
The Sonarly triggers against the sandbox: a gate's wait, checks and grants shared by gates, the quota window watcher.

Single-trigger waits use time travel; many triggers on one event loop run in real time on
windows of about a second, since one clock cannot be moved by many sleepers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_quota.triggers.sonarly import SharedQuota, SonarlyQuotaResetTrigger, SonarlyQuotaWindowTrigger
from tests.conftest import SONARLY_KEY, first_event, sonarly_at, time_travel

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
        "waiting_since": START,
    }
    params.update(kwargs)
    return SonarlyQuotaResetTrigger(**params)


@pytest.fixture
def traveller(monkeypatch):
    """Time travel: every trigger sleep moves the clock (and the sandbox's) instead of waiting."""
    with time_travel(monkeypatch, START) as machine:
        yield machine


def boards() -> dict[Any, SharedQuota]:
    """Every SharedQuota still alive, on any event loop: none once the triggers are gone."""
    return {key: board for loop_boards in SharedQuota._boards.values() for key, board in loop_boards.items()}


def gates_in_real_time(triggers: list[SonarlyQuotaResetTrigger]) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(first_event(trigger) for trigger in triggers))

    return asyncio.run(main())


# --------------------------------------------------------------------------- one gate


def test_serialize_round_trip_holds_no_secret(sonarly_conn):
    trigger = make_trigger(hook_params={"read_timeout": 5.0, "max_attempts": 2}, deadline=START + timedelta(hours=6))
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
        "deadline": START + timedelta(hours=6),
        "waiting_since": START,
    }
    assert SonarlyQuotaResetTrigger(**kwargs).serialize() == (classpath, kwargs)

    from airflow.sdk.serde import deserialize, serialize

    stored = json.dumps(serialize(kwargs))  # what the metadata database keeps
    assert deserialize(json.loads(stored)) == kwargs
    assert SONARLY_KEY not in stored and SONARLY_KEY not in repr(trigger)
    assert "Bearer" not in stored and "password" not in stored


def test_sleeps_until_reset_then_one_check(sonarly_conn, sandbox, traveller):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=3600)
    event = asyncio.run(first_event(make_trigger(min_remaining=10)))
    assert event["status"] == "success" and event["checks"] == 1
    assert (event["xcom"]["remaining"], event["xcom"]["granted"]) == (25, 10)
    assert 3599 < sum(traveller.slept) <= 3602.6  # to the reset (the clock ticks on while the test runs)
    assert max(traveller.slept) <= 600  # slept in steps, re-reading the wall clock
    assert sandbox.requests_to("sonarly_quota") == 1
    assert boards() == {}  # nothing left behind


def test_reset_moved_waits_for_the_new_reset(sonarly_conn, sandbox, traveller):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=2 * 3600)  # the API moved it to +2 h
    event = asyncio.run(first_event(make_trigger(reset_at=START + timedelta(hours=1))))
    assert event["status"] == "success" and event["checks"] == 2
    assert 7200 < sum(traveller.slept) <= 7205.2
    assert sandbox.requests_to("sonarly_quota") == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        # started (or restarted after a triggerer outage) with the reset already past
        {"reset_at": START - timedelta(minutes=90)},
        # started in the triggerer (start_from_trigger): nothing checked yet, text rendered from templates
        {"reset_at": None, "waiting_since": None, "min_remaining": "10", "account_group_id": None},
    ],
)
def test_checks_at_once_when_there_is_nothing_to_wait_for(sonarly_conn, sandbox, traveller, kwargs):
    event = asyncio.run(first_event(make_trigger(**kwargs)))
    assert event["status"] == "success" and event["checks"] == 1
    assert traveller.slept == []
    assert event["xcom"]["granted"] == int(kwargs.get("min_remaining", 1))


def test_an_unsafe_host_ends_the_wait_with_an_error_event(monkeypatch, sandbox):
    sonarly_at(monkeypatch, "http://sonarly.example")  # plain http to a remote host: refused before any request
    event = asyncio.run(first_event(make_trigger()))
    assert event["status"] == "error" and event["fail_fast"] and "allow_insecure_http" in event["message"]


def test_min_remaining_above_the_limit_fails_at_the_first_check(sonarly_conn, sandbox, traveller):
    event = asyncio.run(first_event(make_trigger(reset_at=None, waiting_since=None, min_remaining=26)))
    assert event["status"] == "error" and event["fail_fast"] is True
    assert "min_remaining=26 can never be met" in event["message"]
    assert sandbox.requests_to("sonarly_quota") == 1


def test_a_check_after_the_deadline_times_out_without_a_request(sonarly_conn, sandbox, traveller):
    trigger = make_trigger(reset_at=START + timedelta(hours=3), deadline=START + timedelta(hours=2))
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "timeout" and "after the sensor's timeout" in event["message"]
    assert sandbox.requests_to("sonarly_quota") == 0 and traveller.slept == []


def test_a_retry_after_too_long_for_the_hook_is_honoured_by_the_trigger(sonarly_conn, sandbox, traveller):
    sandbox.add_fault("429", endpoint="sonarly_quota", count=1, retry_after="1800")  # 30 min > max_retry_wait
    trigger = make_trigger(reset_at=None, poke_interval=60.0, hook_params={"max_retry_wait": 300})
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "success" and event["checks"] == 2
    assert sandbox.requests_to("sonarly_quota") == 2  # the hook did not wait 30 min in place...
    assert traveller.slept[0] == pytest.approx(60.0, abs=0.1)
    assert 1799 <= sum(traveller.slept[1:]) <= 1801  # ...the trigger did, without holding anything


@pytest.mark.parametrize(("status", "fail_fast", "requests"), [(403, True, 1), (503, False, 3)])
def test_errors_end_the_wait_permanent_at_once_transient_after_three(
    sonarly_conn, sandbox, traveller, recorded_sleeps, status, fail_fast, requests
):
    sandbox.add_fault("status", status=status, endpoint="sonarly_quota", count=None)
    event = asyncio.run(first_event(make_trigger(reset_at=None, hook_params={"max_attempts": 1})))
    assert event["status"] == "error" and event["fail_fast"] is fail_fast and f"HTTP {status}" in event["message"]
    assert sandbox.requests_to("sonarly_quota") == requests


# --------------------------------------------------------------------------- many gates on one quota


def test_many_gates_on_one_quota_share_one_check_at_the_reset(sonarly_conn, sandbox):
    """300 gates on one event loop, real time: one request at the reset, every gate fires after it."""
    count = 300
    sandbox.set_quota("ag_sandbox", limit=count, used=count, reset_in_seconds=1.0)
    reset_at = datetime.now(timezone.utc) + timedelta(seconds=1.0)
    events = gates_in_real_time([make_trigger(reset_at=reset_at, jitter=1.0) for _ in range(count)])
    assert all(event["status"] == "success" and event["xcom"]["granted"] == 1 for event in events)
    assert {event["xcom"]["reset_at"] for event in events} == {events[0]["xcom"]["reset_at"]}  # one answer
    assert sandbox.requests_to("sonarly_quota") == 1
    assert boards() == {}


def test_gates_on_different_quotas_never_share_a_check(monkeypatch, sandbox_server, sandbox):
    """Two account groups, two list types, two connections on one host, two hook settings: five requests."""
    sonarly_at(monkeypatch, sandbox_server.url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_SONARLY_OTHER",
        json.dumps({"conn_type": "sonarly", "host": sandbox_server.url, "password": SONARLY_KEY}),
    )
    keys = [
        ("sonarly_default", "ag_sandbox", "LINKEDIN_CLASSIC", {}),
        ("sonarly_default", "ag_growth", "LINKEDIN_CLASSIC", {}),
        ("sonarly_default", "ag_sandbox", "SALES_NAVIGATOR", {}),
        ("sonarly_other", "ag_sandbox", "LINKEDIN_CLASSIC", {}),
        # other hook settings: one gate's tiny answer cap must not fail the others
        ("sonarly_default", "ag_sandbox", "LINKEDIN_CLASSIC", {"max_response_bytes": 2048}),
    ]
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    triggers = [
        make_trigger(
            sonarly_conn_id=conn, account_group_id=group, list_type=list_type, reset_at=past, hook_params=params
        )
        for conn, group, list_type, params in keys
        for _ in range(5)
    ]
    events = gates_in_real_time(triggers)
    assert all(event["status"] == "success" for event in events)
    assert sandbox.requests_to("sonarly_quota") == len(keys)


def test_gates_are_granted_in_the_order_they_started_waiting_never_more_than_remains(sonarly_conn, sandbox):
    """
    Three gates need 10 each of a fresh quota of 25: the two that started waiting first go, whatever
    the order they wake in; the third waits for the next window, rechecking no sooner than its poke_interval.
    """
    sandbox.set_quota("ag_sandbox", limit=25, used=25, window_seconds=3.0, reset_in_seconds=1.0)
    reset_at = datetime.now(timezone.utc) + timedelta(seconds=1.0)
    started = datetime(2026, 1, 1, tzinfo=timezone.utc)
    order = {"first": started, "second": started + timedelta(minutes=1), "third": started + timedelta(minutes=2)}
    # The last to start waiting wakes first (no jitter), the first wakes last.
    triggers = {
        name: make_trigger(
            reset_at=reset_at,
            min_remaining=10,
            waiting_since=since,
            poke_interval=1.0,
            jitter={"first": 0.8, "second": 0.4, "third": 0.0}[name],
        )
        for name, since in order.items()
    }

    async def main() -> dict[str, tuple[dict[str, Any], datetime]]:
        async def run(name: str) -> tuple[str, dict[str, Any], datetime]:
            event = await first_event(triggers[name])
            return name, event, datetime.now(timezone.utc)

        results = await asyncio.gather(*(run(name) for name in triggers))
        return {name: (event, at) for name, event, at in results}

    results = asyncio.run(main())
    windows = {name: event["xcom"]["reset_at"] for name, (event, _) in results.items()}
    assert windows["first"] == windows["second"] != windows["third"]  # the third got the next window
    assert all(event["xcom"]["granted"] == 10 for event, _ in results.values())
    assert results["third"][1] > results["second"][1]
    # At the reset one check served all three; the third rechecked once per poke_interval (1 s) within the
    # 3-second window, and once after the next reset.
    assert 2 <= sandbox.requests_to("sonarly_quota") <= 6


def test_units_spent_by_released_runs_are_not_counted_twice(sonarly_conn, sandbox, traveller):
    """
    Two gates take 20 of 30; their runs spend them. A gate that comes later in the window gets the
    last 10: what remains (10) and what was never granted (30 - 20) agree. Counting the grants
    against what remains (10 - 20) would have starved it until the reset.
    """
    sandbox.set_quota("ag_sandbox", limit=30, used=0, window_seconds=3600, reset_in_seconds=1800)
    early = [make_trigger(reset_at=None, waiting_since=None, min_remaining=10) for _ in range(2)]
    later = make_trigger(reset_at=None, waiting_since=None, min_remaining=10)

    async def main() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        first = await asyncio.gather(*(first_event(trigger) for trigger in early))
        sandbox.set_quota("ag_sandbox", used=20)  # the released runs spent their grants
        traveller.shift(60)
        return first, await first_event(later)

    first, last = asyncio.run(main())
    assert [event["xcom"]["granted"] for event in first] == [10, 10]
    assert last["status"] == "success" and (last["xcom"]["granted"], last["xcom"]["remaining"]) == (10, 10)
    assert sandbox.requests_to("sonarly_quota") == 2


def test_grants_outlive_the_last_gate_of_their_window(sonarly_conn, sandbox, traveller):
    """
    A gate is granted all 10 and its trigger ends; its run has not spent them yet. A gate that
    starts a minute later in the same window must wait for the next one, not be granted them again.
    """
    sandbox.set_quota("ag_sandbox", limit=10, used=0, window_seconds=3600, reset_in_seconds=1800)
    first, second = (make_trigger(reset_at=None, waiting_since=None, min_remaining=10) for _ in range(2))

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        granted = await first_event(first)
        traveller.shift(60)
        return granted, await first_event(second)

    granted, later_one = asyncio.run(main())
    assert granted["xcom"]["granted"] == later_one["xcom"]["granted"] == 10
    assert later_one["xcom"]["reset_at"] != granted["xcom"]["reset_at"]  # granted from the next window
    assert boards() == {}  # the boards are gone; only the window's count stays, until its reset


def test_a_gate_joining_after_a_fresh_answer_is_granted_from_it(sonarly_conn, sandbox):
    """One check serves a gate that starts waiting within the jitter after it: no second request, no extra wait."""
    from airflow_provider_quota.hooks.sonarly import SonarlyHook

    async def main() -> list[int]:
        hook = SonarlyHook()
        async with SharedQuota.of(hook, "ag_sandbox", None) as board:
            first = board.wait(5, START)
            await board.check(hook, datetime.now(timezone.utc) - timedelta(seconds=5))
            second = board.wait(5, START + timedelta(minutes=1))
            await board.check(hook, datetime.now(timezone.utc) - timedelta(seconds=5))
            return [first.released.result()[1], second.released.result()[1]]

    assert asyncio.run(main()) == [5, 5]
    assert sandbox.requests_to("sonarly_quota") == 1
    assert boards() == {}


def test_a_clock_that_stepped_back_costs_one_request_not_a_loop(sonarly_conn, sandbox):
    """A check that must be newer than the clock's now (the clock stepped back): its own request serves it."""
    from airflow_provider_quota.hooks.sonarly import SonarlyHook

    async def main() -> Any:
        hook = SonarlyHook()
        async with SharedQuota.of(hook, "ag_sandbox", None) as board:
            return await asyncio.wait_for(board.check(hook, datetime.now(timezone.utc) + timedelta(hours=1)), 5)

    assert asyncio.run(main()).remaining == 25
    assert sandbox.requests_to("sonarly_quota") == 1


def test_gates_cancelled_while_a_shared_check_is_in_flight(sonarly_conn, sandbox):
    """Cancelled waiters leave the queue; the check they shared still serves the others; nothing leaks."""
    sandbox.add_fault("stall", endpoint="sonarly_quota", count=1, seconds=0.5)
    past = datetime.now(timezone.utc) - timedelta(seconds=1)

    async def main() -> list[Any]:
        tasks = [asyncio.ensure_future(first_event(make_trigger(reset_at=past))) for _ in range(6)]
        await asyncio.sleep(0.2)  # the check is in flight, the sandbox stalls it
        for task in tasks[:3]:
            task.cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(result, asyncio.CancelledError) for result in results[:3])
    assert all(result["status"] == "success" for result in results[3:])
    assert sandbox.requests_to("sonarly_quota") == 1
    assert boards() == {}


def test_a_permanent_error_is_shared_by_every_gate_at_once(sonarly_conn, sandbox):
    """The key is revoked while 50 gates wait for the reset: the first check fails them all, at once."""
    sandbox.add_fault("status", status=401, endpoint="sonarly_quota", count=None)
    reset_at = datetime.now(timezone.utc) + timedelta(seconds=1)
    events = gates_in_real_time([make_trigger(reset_at=reset_at, jitter=1.0) for _ in range(50)])
    assert all(event["status"] == "error" and event["fail_fast"] and "HTTP 401" in event["message"] for event in events)
    assert sandbox.requests_to("sonarly_quota") == 1


def test_a_transient_error_is_one_failure_for_each_gate_that_shares_it(sonarly_conn, sandbox, recorded_sleeps):
    sandbox.add_fault("500", endpoint="sonarly_quota", count=1)
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    triggers = [make_trigger(reset_at=past, poke_interval=0.5, hook_params={"max_attempts": 1}) for _ in range(20)]
    events = gates_in_real_time(triggers)
    assert all(event["status"] == "success" and event["checks"] == 2 for event in events)
    assert sandbox.requests_to("sonarly_quota") <= 3  # the failed check, then about one retry for all


# --------------------------------------------------------------------------- the quota window watcher


class MemoryStateStore:
    """An asset state store as Airflow 3.3 hands one to watcher triggers (aget/aset), kept in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


def window_trigger(**kwargs: Any) -> SonarlyQuotaWindowTrigger:
    params = {"sonarly_conn_id": "sonarly_default", "account_group_id": "ag_sandbox", "min_remaining": 5, **kwargs}
    return SonarlyQuotaWindowTrigger(**params)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"min_remaining": "five"}, "min_remaining must be a non-negative integer"),
        ({"sonarly_conn_id": ""}, "sonarly_conn_id must be a connection id"),
        ({"poke_interval": 0}, "poke_interval must be a number of seconds from 1 to 3600"),
        ({"jitter": -1.0}, "jitter must be a number of seconds from 0 to 3600"),
    ],
)
def test_window_trigger_arguments_are_refused_when_the_dag_is_parsed(kwargs, problem):
    """A watcher that raised in run() would be restarted by Airflow every second, one paid check each time."""
    from airflow_provider_quota.exceptions import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=problem):
        window_trigger(**kwargs)


async def events_of(trigger: SonarlyQuotaWindowTrigger, count: int) -> list[dict[str, Any]]:
    events = []
    async for event in trigger.run():
        events.append(dict(event.payload))
        if len(events) == count:
            break
    return events


def test_window_trigger_kwargs_are_plain_json_for_airflow_to_hash():
    classpath, kwargs = window_trigger(list_type="LINKEDIN_CLASSIC").serialize()
    assert classpath == "airflow_provider_quota.triggers.sonarly.SonarlyQuotaWindowTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert SonarlyQuotaWindowTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_one_event_per_usable_window_across_three_windows_with_faults(
    sonarly_conn, sandbox, traveller, recorded_sleeps
):
    sandbox.set_quota("ag_sandbox", limit=25, used=0, window_seconds=3600, reset_in_seconds=1800)
    # Faults between windows: a 500, then an HTML error page from a proxy; the hook retries both.
    sandbox.add_fault("500", endpoint="sonarly_quota", count=1)
    trigger = window_trigger()

    async def main() -> list[dict[str, Any]]:
        events = []
        async for event in trigger.run():
            events.append(dict(event.payload))
            if len(events) == 1:
                sandbox.add_fault("html", endpoint="sonarly_quota", count=1)
            if len(events) == 3:
                return events
        raise AssertionError("the watcher stopped")

    events = asyncio.run(main())
    resets = [event["reset_at"] for event in events]
    assert len(set(resets)) == 3  # one event per window, never two for one
    assert all(event["remaining"] >= 5 and event["exhausted"] is False for event in events)
    # window 1 at once (one 500 retried inside the hook), window 2 after one failed check, window 3
    assert sandbox.requests_to("sonarly_quota") == 5


def test_no_event_while_the_quota_is_spent_and_none_twice_after_a_restart(sonarly_conn, sandbox, traveller):
    sandbox.set_quota("ag_sandbox", limit=25, used=22, window_seconds=3600, reset_in_seconds=1800)  # 3 < 5 left
    store = MemoryStateStore()
    first = window_trigger()
    first.asset_state_store = store
    [event] = asyncio.run(events_of(first, 1))
    assert traveller.slept and 1800 < sum(traveller.slept) <= 1806  # nothing while 3 remained: the next window
    restarted = window_trigger()  # a triggerer restart inside the same window: no second event for it
    restarted.asset_state_store = store
    [later_event] = asyncio.run(events_of(restarted, 1))
    assert later_event["reset_at"] != event["reset_at"]
    assert store.values[SonarlyQuotaWindowTrigger.WATERMARK] == later_event["reset_at"]


def test_the_watcher_never_raises_and_never_spins_on_a_revoked_key(monkeypatch, sandbox_server, sandbox, traveller):
    sonarly_at(monkeypatch, sandbox_server.url, password="sk_live_revoked")

    async def main() -> None:
        async for _ in window_trigger().run():
            raise AssertionError("no event with a revoked key")

    async def for_a_day() -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(main(), timeout=0.5)

    asyncio.run(for_a_day())
    # Time travel: in half a second of real time the watcher's clock ran for days, one check per 15 minutes.
    assert sum(traveller.slept) >= 899 * (sandbox.requests_to("sonarly_quota") - 1)
    assert all(seconds >= 1.0 for seconds in traveller.slept)


def test_a_min_remaining_given_as_text_is_read_as_a_number(sonarly_conn, sandbox, traveller):
    sandbox.set_quota("ag_sandbox", limit=25, used=0, window_seconds=3600, reset_in_seconds=1800)
    trigger = window_trigger(min_remaining="5")
    assert trigger.serialize()[1]["min_remaining"] == 5
    [event] = asyncio.run(events_of(trigger, 1))
    assert event["remaining"] == 25


def test_a_window_that_can_never_be_enough_is_said_and_checked_slowly(sonarly_conn, sandbox, traveller, capsys):
    sandbox.set_quota("ag_sandbox", limit=25, used=0, window_seconds=3600, reset_in_seconds=1800)

    async def main() -> None:
        async for _ in window_trigger(min_remaining=26).run():
            raise AssertionError("no window of 25 holds 26")

    async def for_a_while() -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(main(), timeout=0.5)

    asyncio.run(for_a_while())
    logged = capsys.readouterr()
    assert (
        "min_remaining=26 can never be met" in logged.out + logged.err
        and "allows 25 per window" in logged.out + logged.err
    )
    assert sum(traveller.slept) >= 899 * (sandbox.requests_to("sonarly_quota") - 1)


def test_a_reset_that_keeps_moving_is_not_a_new_window_every_second(sonarly_conn, sandbox, traveller):
    """Windows of a fifth of a second: every check would see a new resetAt, and fire an event (a DAG run)."""
    sandbox.set_quota("ag_sandbox", limit=25, used=0, window_seconds=0.2, reset_in_seconds=0.2)
    events = asyncio.run(events_of(window_trigger(jitter=0.0), 4))
    assert len({event["reset_at"] for event in events}) == 4
    assert sum(seconds < 9.9 for seconds in traveller.slept) <= 1, (
        traveller.slept
    )  # only the first reset is awaited as announced
