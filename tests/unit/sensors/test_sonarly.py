"""SonarlyQuotaSensor in poke, reschedule and deferrable mode, against the sandbox, with time travel."""

from __future__ import annotations

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

from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor
from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger
from tests.conftest import sonarly_at, time_travel

START = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)


class FakeTaskInstance:
    """The one method BaseSensorOperator asks of the task instance in reschedule mode."""

    def __init__(self) -> None:
        self.first_reschedule_date: datetime | None = None

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first_reschedule_date


def make_sensor(**kwargs: Any) -> SonarlyQuotaSensor:
    kwargs.setdefault("poke_interval", 30)
    kwargs.setdefault("timeout", 12 * 3600)
    kwargs.setdefault("jitter", 2.0)
    return SonarlyQuotaSensor(task_id="wait_for_quota", **kwargs)


@pytest.fixture
def clock(monkeypatch):
    """Travel in time; the sensor's sleeps move the clock instead of waiting."""
    with time_travel(monkeypatch, START) as traveller:
        yield traveller


async def _time_travel_sleep(traveller, seconds: float) -> None:
    traveller.shift(seconds)


def run_trigger(trigger: SonarlyQuotaResetTrigger, traveller, monkeypatch) -> tuple[dict, list[float]]:
    """Run the trigger to its event, each asyncio sleep moving the clock instead of waiting."""
    import asyncio

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        traveller.shift(seconds)

    monkeypatch.setattr("airflow_provider_quota.triggers.base._sleep", sleep)

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first_event()), slept


def test_usable_quota_passes_at_the_first_check_in_every_mode(sonarly_conn, sandbox):
    for mode, deferrable in (("poke", False), ("reschedule", False), ("poke", True)):
        sensor = make_sensor(mode=mode, deferrable=deferrable)
        result = sensor.execute({"ti": FakeTaskInstance()})
        assert result["remaining"] == 25 and result["exhausted"] is False
    assert sandbox.requests_to("sonarly_quota") == 3


def test_min_remaining_is_required(sonarly_conn, sandbox, clock):
    sandbox.set_quota("ag_sandbox", used=20, reset_in_seconds=600)  # 5 left, not exhausted
    result = make_sensor(min_remaining=6).execute({})
    assert result["remaining"] == 25  # it waited for the reset
    assert 600 < clock.slept[0] <= 603


def test_exhausted_true_always_waits_even_with_remaining(sonarly_conn, sandbox, clock):
    # The API's own example: remaining 25 and exhausted true.
    sandbox.set_quota("ag_sandbox", used=0, reset_in_seconds=3600)
    sandbox.add_fault("patch", endpoint="sonarly_quota", patch={"remaining": 25, "exhausted": True})
    result = make_sensor().execute({})
    assert result["exhausted"] is False
    assert sandbox.requests_to("sonarly_quota") == 2


@pytest.mark.parametrize("wait_seconds", [600, 3600, 6 * 3600])
def test_poke_mode_sleeps_until_the_reset(sonarly_conn, sandbox, clock, wait_seconds):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=wait_seconds)
    result = make_sensor(mode="poke").execute({})
    assert result["remaining"] == 25
    assert sandbox.requests_to("sonarly_quota") == 2
    assert len(clock.slept) == 1 and wait_seconds < clock.slept[0] <= wait_seconds + 3


def test_poke_mode_without_reset_at_uses_poke_interval(sonarly_conn, sandbox, clock):
    sandbox.add_fault("patch", endpoint="sonarly_quota", count=3, patch={"resetAt": None, "exhausted": True})
    assert make_sensor(poke_interval=45).execute({})["exhausted"] is False
    assert clock.slept == [45, 45, 45]


def test_poke_mode_with_reset_in_the_past_uses_poke_interval(sonarly_conn, sandbox, clock):
    past = (START - timedelta(hours=2)).isoformat()
    sandbox.add_fault("patch", endpoint="sonarly_quota", count=2, patch={"resetAt": past, "exhausted": True})
    assert make_sensor(poke_interval=45).execute({})["exhausted"] is False
    assert clock.slept == [45, 45]


def test_reschedule_mode_reschedules_to_the_reset(sonarly_conn, sandbox, clock):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=3 * 3600)
    ti = FakeTaskInstance()
    sensor = make_sensor(mode="reschedule", poke_interval=60)
    with pytest.raises(AirflowRescheduleException) as caught:
        sensor.execute({"ti": ti})
    reset_at = START + timedelta(hours=3)
    assert reset_at < caught.value.reschedule_date <= reset_at + timedelta(seconds=3)

    ti.first_reschedule_date = START
    clock.move_to(caught.value.reschedule_date)
    result = make_sensor(mode="reschedule", poke_interval=60).execute({"ti": ti})
    assert result["remaining"] == 25
    assert sandbox.requests_to("sonarly_quota") == 2


@pytest.mark.parametrize("wait_seconds", [600, 3600, 6 * 3600])
def test_deferrable_wait_costs_two_requests_whatever_its_length(
    sonarly_conn, sandbox, clock, monkeypatch, wait_seconds
):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=wait_seconds)
    sensor = make_sensor(deferrable=True, timeout=8 * 3600)
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute({})
    deferred = caught.value
    assert isinstance(deferred.trigger, SonarlyQuotaResetTrigger)
    assert deferred.method_name == "execute_complete"
    assert timedelta(hours=8) - timedelta(seconds=5) < deferred.timeout <= timedelta(hours=8)
    assert deferred.trigger.deadline == sensor._started_at + timedelta(hours=8)
    assert deferred.trigger.account_group_id == "ag_sandbox"  # resolved from the connection before deferring
    assert abs(deferred.trigger.reset_at - (START + timedelta(seconds=wait_seconds))) < timedelta(seconds=1)

    event, slept = run_trigger(deferred.trigger, clock, monkeypatch)
    assert event["status"] == "success" and event["checks"] == 1
    assert wait_seconds < sum(slept) <= wait_seconds + 3
    result = sensor.execute_complete({}, event)
    assert result["remaining"] == 25 and result["exhausted"] is False
    assert sandbox.requests_to("sonarly_quota") == 2


def test_deferral_timeout_fails_or_skips_like_any_sensor(sonarly_conn):
    from airflow.sdk.bases.operator import TriggerFailureReason

    timeout = {"error": TriggerFailureReason.TRIGGER_TIMEOUT}
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(deferrable=True).resume_execution("__fail__", timeout, {})
    with pytest.raises(AirflowSkipException):
        make_sensor(deferrable=True, soft_fail=True).resume_execution("__fail__", timeout, {})


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_a_reset_after_the_timeout_times_out_at_once_without_another_request(sonarly_conn, sandbox, clock, mode):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=6 * 3600)
    context = {"ti": FakeTaskInstance()}
    with pytest.raises(AirflowSensorTimeout, match=r"resets at .*after the sensor's timeout of 600"):
        make_sensor(mode=mode, timeout=600).execute(context)
    assert clock.slept == []  # no wait for a check that could only find the quota exhausted
    assert sandbox.requests_to("sonarly_quota") == 1
    with pytest.raises(AirflowSkipException, match="soft_fail"):
        make_sensor(mode=mode, timeout=600, soft_fail=True).execute(context)
    assert sandbox.requests_to("sonarly_quota") == 2


def test_reschedule_mode_times_out(sonarly_conn, sandbox, clock):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=6 * 3600)
    ti = FakeTaskInstance()
    ti.first_reschedule_date = START - timedelta(hours=2)
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(mode="reschedule", timeout=3600).execute({"ti": ti})
    with pytest.raises(AirflowSkipException):
        make_sensor(mode="reschedule", timeout=3600, soft_fail=True).execute({"ti": ti})


@pytest.fixture
def revoked_key(monkeypatch, sandbox_server) -> str:
    """``sonarly_default`` on the sandbox with a key the sandbox answers 401 to."""
    return sonarly_at(monkeypatch, sandbox_server.url, password="sk_live_revoked")


@pytest.mark.parametrize("setting", ["soft_fail", "never_fail"])
def test_deferrable_first_check_skips_on_a_bad_key_like_poke_mode(revoked_key, sandbox, setting):
    for deferrable in (False, True):
        with pytest.raises(AirflowSkipException, match=setting):
            make_sensor(deferrable=deferrable, **{setting: True}).execute({"ti": FakeTaskInstance()})
    with pytest.raises(AirflowFailException, match="HTTP 401"):
        make_sensor(deferrable=True).execute({})


@pytest.mark.parametrize(("mode", "deferrable"), [("poke", False), ("reschedule", False), ("poke", True)])
def test_bad_key_fails_at_once_without_waiting(revoked_key, sandbox, mode, deferrable):
    with pytest.raises(AirflowFailException, match=r"HTTP 401 UNAUTHORIZED: Invalid or missing API key \(traceId "):
        make_sensor(mode=mode, deferrable=deferrable).execute({"ti": FakeTaskInstance()})
    assert sandbox.requests_to("sonarly_quota") == 1


def test_key_revoked_while_deferred_fails_fast(sonarly_conn, sandbox, clock, monkeypatch):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=3600)
    sensor = make_sensor(deferrable=True)
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute({})
    sandbox.add_fault("status", status=403, endpoint="sonarly_quota")
    event, _ = run_trigger(caught.value.trigger, clock, monkeypatch)
    assert event["status"] == "error" and event["fail_fast"] is True
    with pytest.raises(AirflowFailException, match="HTTP 403"):
        sensor.execute_complete({}, event)
    assert sandbox.requests_to("sonarly_quota") == 2


@pytest.mark.parametrize("event", [None, {}, {"status": "weird"}, {"status": "success"}])
def test_unexpected_events_fail_loudly(sonarly_conn, event):
    with pytest.raises(Exception, match=r"unexpected event|without a quota"):
        make_sensor(deferrable=True).execute_complete({}, event)


def test_transient_error_event_fails_normally_so_task_retries_apply(sonarly_conn):
    with pytest.raises(Exception, match="HTTP 503") as caught:
        make_sensor(deferrable=True).execute_complete(
            {}, {"status": "error", "fail_fast": False, "message": "HTTP 503"}
        )
    assert not isinstance(caught.value, AirflowFailException)


def test_templated_min_remaining_and_bad_values(sonarly_conn, sandbox):
    sensor = make_sensor(min_remaining="25")
    assert sensor.execute({})["remaining"] == 25


def test_template_fields():
    assert set(SonarlyQuotaSensor.template_fields) == {
        "sonarly_conn_id",
        "account_group_id",
        "list_type",
        "min_remaining",
    }


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"hook_params": {"api_key": "x"}}, "api_key: Extra inputs are not permitted"),
        ({"hook_params": {"read_timeout": "10"}}, "read_timeout: Input should be a valid number"),
        ({"jitter": -1}, "jitter"),
    ],
)
def test_bad_arguments_fail_at_parse_time(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        make_sensor(**kwargs)


@pytest.mark.parametrize("value", ["many", "²", "-1", True, 2**70])
def test_bad_min_remaining_fails_before_any_request(sonarly_conn, sandbox, value):
    for deferrable in (False, True):
        with pytest.raises(AirflowFailException, match="min_remaining must be a non-negative integer"):
            make_sensor(min_remaining=value, deferrable=deferrable).execute({})
    assert sandbox.stats()["total_requests"] == 0


@pytest.mark.parametrize(("mode", "deferrable"), [("poke", False), ("reschedule", False), ("poke", True)])
def test_min_remaining_above_the_limit_fails_at_the_first_check(sonarly_conn, sandbox, mode, deferrable):
    with pytest.raises(AirflowFailException, match=r"min_remaining=26 can never be met: .* allows 25 per window"):
        make_sensor(min_remaining=26, mode=mode, deferrable=deferrable).execute({"ti": FakeTaskInstance()})
    assert sandbox.requests_to("sonarly_quota") == 1


def test_deferrable_mode_times_out_at_once_when_the_reset_is_after_the_timeout(sonarly_conn, sandbox, clock):
    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=6 * 3600)
    with pytest.raises(AirflowSensorTimeout, match="after the sensor's timeout of 600"):
        make_sensor(deferrable=True, timeout=600).execute({})
    with pytest.raises(AirflowSkipException, match="soft_fail"):
        make_sensor(deferrable=True, timeout=600, soft_fail=True).execute({})
    assert sandbox.requests_to("sonarly_quota") == 2  # one check each, no trigger


def test_xcom_says_what_the_gate_granted(sonarly_conn, sandbox):
    result = make_sensor(min_remaining=10).execute({})
    assert (result["granted"], result["remaining"]) == (10, 25)
