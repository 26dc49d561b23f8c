"""
Transport faults, end to end through the tasks: each fault injected over real HTTP, each outcome asserted.

The Sonarly side runs the quota gate (``SonarlyQuotaSensor``, one poke), the Indeed side the
extraction (``IndeedQuotaUsageOperator``); the asynchronous path runs ``SonarlyQuotaResetTrigger``.
Retry waits are recorded instead of slept (``recorded_sleeps``), trigger waits are time travel.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_quota.exceptions import QuotaApiError, RetryAfterTooLongError, UnexpectedResponseError
from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor
from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger
from tests.conftest import indeed_at, sonarly_at
from tests.reliability.conftest import START, expected_usage, first_event, warehouse_keys
from tests.reliability.servers import SilentServer, refused_port

APIS = ("sonarly", "indeed")
ENDPOINT = {"sonarly": "sonarly_quota", "indeed": "indeed_quota_usage"}


@pytest.fixture
def apis(sonarly_conn: str, indeed_conn: str) -> None:
    """Both connections, pointing at the sandbox."""


def gate(**hook_params: Any) -> SonarlyQuotaSensor:
    return SonarlyQuotaSensor(
        task_id="gate",
        mode="poke",
        deferrable=False,
        poke_interval=60,
        timeout=3600,
        hook_params={"max_attempts": 5, **hook_params},
    )


def extraction(**hook_params: Any) -> IndeedQuotaUsageOperator:
    return IndeedQuotaUsageOperator(task_id="extract", month="122024", hook_params={"max_attempts": 5, **hook_params})


def run(api: str, figures: Any, *, expect: type[BaseException] | None = None, match: str | None = None, **params: Any):
    """Run the API's task once; on success check its XCom is the right answer."""
    task = gate(**params) if api == "sonarly" else extraction(**params)
    result = figures.task(lambda: task.execute({}), expect=expect, match=match)
    if expect is None:
        if api == "sonarly":
            assert (result["remaining"], result["exhausted"]) == (25, False)
        else:
            assert (result["employer_id"], result["month"]) == ("emp-acme", "122024")
            assert Decimal(result["spend_amount"]) == expected_usage("emp-acme", "122024")["spend_amount"]
    return result


def point_at(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """Both default connections, pointing at ``host``."""
    sonarly_at(monkeypatch, host)
    indeed_at(monkeypatch, host)


def trigger(**hook_params: Any) -> SonarlyQuotaResetTrigger:
    """A deferred gate whose quota resets in an hour (the sandbox's quota is usable by then)."""
    return SonarlyQuotaResetTrigger(
        sonarly_conn_id="sonarly_default",
        account_group_id="ag_sandbox",
        list_type="LINKEDIN_CLASSIC",
        min_remaining=1,
        reset_at=START + timedelta(hours=1),
        poke_interval=60.0,
        jitter=1.0,
        hook_params={"max_attempts": 3, **hook_params},
    )


def without_hanging(work: Callable[[], Any], watchdog_seconds: float = 120.0) -> Any:
    """Run ``work`` in a thread; a hang (no answer ever) fails the test instead of blocking the suite."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(watchdog_seconds)
    assert not thread.is_alive(), "the task hung: no timeout fired"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


# --------------------------------------------------------------------------- 429 and Retry-After


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("header", ["seconds", "http-date"])
def test_429_storm_within_the_budget_waits_as_asked_then_succeeds(apis, sandbox, recorded_sleeps, figures, api, header):
    retry_after = {"retry_after": "4"} if header == "seconds" else {"retry_after_http_date_in": 20}
    sandbox.add_fault("429", endpoint=ENDPOINT[api], count=4, **retry_after)
    run(api, figures)
    assert sandbox.requests_to(ENDPOINT[api]) == 5
    assert len(recorded_sleeps) == 4
    if header == "seconds":
        assert all(4 <= seconds < 10 for seconds in recorded_sleeps)  # the server's 4 s, or a longer backoff
        assert recorded_sleeps[:2] == [4.0, 4.0]
    else:  # an HTTP date 20 s ahead, at one-second resolution
        assert all(15 <= seconds <= 20.5 for seconds in recorded_sleeps)


@pytest.mark.parametrize("api", APIS)
def test_429_storm_longer_than_the_budget_fails_after_five_attempts(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("429", endpoint=ENDPOINT[api], count=None, retry_after="2")
    error = run(api, figures, expect=QuotaApiError, match=r"HTTP 429 RATE_LIMITED: .*gave up after 5 attempts")
    assert not isinstance(error, AirflowFailException)  # transient: the task's own retries still apply
    assert sandbox.requests_to(ENDPOINT[api]) == 5
    assert len(recorded_sleeps) == 4


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("header", ["seconds", "http-date"])
def test_retry_after_past_the_cap_fails_fast_with_a_clear_message(apis, sandbox, recorded_sleeps, figures, api, header):
    retry_after = {"retry_after": "7200"} if header == "seconds" else {"retry_after_http_date_in": 7200}
    sandbox.add_fault("429", endpoint=ENDPOINT[api], count=None, **retry_after)
    error = run(
        api, figures, expect=RetryAfterTooLongError, match=r"retry after 7\d{3} s, more than max_retry_wait=300 s"
    )
    assert "instead of holding a worker" in str(error)
    assert sandbox.requests_to(ENDPOINT[api]) == 1
    assert recorded_sleeps == []


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("retry_after", [{"retry_after": "0"}, {"retry_after_http_date_in": -120}])
def test_retry_after_zero_or_in_the_past_still_backs_off_with_jitter(
    apis, sandbox, recorded_sleeps, figures, api, retry_after
):
    """Regression: "Retry-After: 0", or an HTTP date already past (clock skew), used to mean no wait at all."""
    sandbox.add_fault("429", endpoint=ENDPOINT[api], count=3, **retry_after)
    run(api, figures)
    assert sandbox.requests_to(ENDPOINT[api]) == 4
    # exponential backoff (1, 2, 4 s) plus jitter in [0, 1): never a retry storm without pause
    assert [int(seconds) for seconds in recorded_sleeps] == [1, 2, 4]
    assert len(set(recorded_sleeps)) == 3


# --------------------------------------------------------------------------- 5xx bursts


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_5xx_burst_shorter_than_the_budget_is_retried_with_backoff(
    apis, sandbox, recorded_sleeps, figures, api, status
):
    sandbox.add_fault(status, endpoint=ENDPOINT[api], count=4)
    run(api, figures)
    assert sandbox.requests_to(ENDPOINT[api]) == 5
    assert [int(seconds) for seconds in recorded_sleeps] == [1, 2, 4, 8]  # exponential, plus jitter below 1 s


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_5xx_burst_longer_than_the_budget_fails_after_five_attempts(
    apis, sandbox, recorded_sleeps, figures, api, status
):
    sandbox.add_fault(status, endpoint=ENDPOINT[api], count=None)
    error = run(api, figures, expect=QuotaApiError, match=rf"HTTP {status} .*gave up after 5 attempts")
    assert error.status == int(status) and error.retryable
    assert sandbox.requests_to(ENDPOINT[api]) == 5
    assert len(recorded_sleeps) == 4


# --------------------------------------------------------------------------- connections


@pytest.mark.parametrize("api", APIS)
def test_connection_refused_fails_after_the_budget(monkeypatch, sandbox, recorded_sleeps, figures, api):
    with refused_port() as port:
        point_at(monkeypatch, f"http://127.0.0.1:{port}")
        error = run(api, figures, expect=QuotaApiError, match=r"CONNECTION_ERROR: .*gave up after 5 attempts")
    assert error.status is None and "refused" in str(error).lower()
    figures.fault("connection refused", 5)
    figures.sent(5)
    assert len(recorded_sleeps) == 4


@pytest.mark.parametrize("api", APIS)
def test_connection_reset_is_retried_then_succeeds(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("reset", endpoint=ENDPOINT[api], count=2)
    run(api, figures)
    assert sandbox.requests_to(ENDPOINT[api]) == 3


@pytest.mark.parametrize("api", APIS)
def test_connection_reset_every_time_fails_after_the_budget(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("reset", endpoint=ENDPOINT[api], count=None)
    run(api, figures, expect=QuotaApiError, match=r"CONNECTION_ERROR: .*gave up after 5 attempts")
    assert sandbox.requests_to(ENDPOINT[api]) == 5


# --------------------------------------------------------------------------- stalls


@pytest.mark.parametrize("api", APIS)
def test_stalled_answer_times_out_and_the_retry_succeeds(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("stall", endpoint=ENDPOINT[api], count=1, seconds=6)
    run(api, figures, read_timeout=2.0)  # room for a slow machine: only the stalled answer may time out
    assert sandbox.requests_to(ENDPOINT[api]) == 2  # the stalled one, then the answered one


@pytest.mark.parametrize("api", APIS)
def test_server_that_always_stalls_ends_in_a_timeout_error(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("stall", endpoint=ENDPOINT[api], count=None, seconds=3)
    run(
        api,
        figures,
        expect=QuotaApiError,
        match=r"TIMEOUT: .*ReadTimeout.*gave up after 2 attempts",
        read_timeout=0.5,
        max_attempts=2,
    )
    assert sandbox.requests_to(ENDPOINT[api]) == 2


@pytest.mark.parametrize("api", APIS)
def test_server_that_accepts_and_never_answers_cannot_hang_the_task(
    monkeypatch, sandbox, recorded_sleeps, figures, api
):
    with SilentServer() as server:
        point_at(monkeypatch, f"http://127.0.0.1:{server.port}")
        error = without_hanging(
            lambda: run(api, figures, expect=QuotaApiError, match="TIMEOUT", read_timeout=0.5, max_attempts=2)
        )
        assert "gave up after 2 attempts" in str(error)
        assert server.accepted >= 1
    figures.fault("accept and stall", 2)
    figures.sent(2)


def test_trigger_on_a_server_that_never_answers_ends_with_an_error_event(
    monkeypatch, sandbox, clock, recorded_sleeps, figures
):
    with SilentServer() as server:
        point_at(monkeypatch, f"http://127.0.0.1:{server.port}")
        event = without_hanging(lambda: first_event(trigger(read_timeout=0.5, max_attempts=2)))
    figures.event(event, status="error", match=r"TIMEOUT.*failure 3 in a row")
    assert event["fail_fast"] is False
    figures.fault("accept and stall", 6)
    figures.sent(6)


# --------------------------------------------------------------------------- bodies


@pytest.mark.parametrize("api", APIS)
def test_truncated_body_is_retried_then_succeeds(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("truncate", endpoint=ENDPOINT[api], count=2)
    run(api, figures)
    assert sandbox.requests_to(ENDPOINT[api]) == 3


@pytest.mark.parametrize("api", APIS)
def test_truncated_body_every_time_fails_without_a_wrong_number(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("truncate", endpoint=ENDPOINT[api], count=None)
    run(api, figures, expect=QuotaApiError, match=r"got no complete answer.*gave up after 5 attempts")


@pytest.mark.parametrize("api", APIS)
def test_malformed_json_fails_at_once_naming_the_problem(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("malformed", endpoint=ENDPOINT[api], count=None)
    run(api, figures, expect=UnexpectedResponseError, match=r"HTTP 200 .*malformed JSON")
    assert sandbox.requests_to(ENDPOINT[api]) == 1


@pytest.mark.parametrize("api", APIS)
def test_html_error_page_from_a_proxy_is_retried_then_succeeds(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("html", endpoint=ENDPOINT[api], count=2, status=502)
    run(api, figures)
    assert sandbox.requests_to(ENDPOINT[api]) == 3


@pytest.mark.parametrize("api", APIS)
def test_html_error_page_every_time_says_so(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("html", endpoint=ENDPOINT[api], count=None, status=503)
    run(api, figures, expect=QuotaApiError, match=r"HTTP 503 .*an HTML page.*gave up after 5 attempts")


@pytest.mark.parametrize("api", APIS)
def test_success_false_with_http_200_is_an_error_not_a_result(apis, sandbox, recorded_sleeps, figures, api):
    sandbox.add_fault("success_false", endpoint=ENDPOINT[api], count=None)
    run(api, figures, expect=QuotaApiError, match=r"HTTP 200 INTERNAL_ERROR: The request could not be processed")
    assert sandbox.requests_to(ENDPOINT[api]) == 1


# --------------------------------------------------------------------------- the asynchronous path


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("503", {"count": 2}),
        ("reset", {"count": 2}),
        ("truncate", {"count": 2}),
        ("stall", {"count": 1, "seconds": 6}),
        ("html", {"count": 2, "status": 502}),
    ],
)
def test_trigger_rides_out_transient_faults(sonarly_conn, sandbox, clock, recorded_sleeps, figures, kind, fields):
    sandbox.add_fault(kind, endpoint="sonarly_quota", **fields)
    event = first_event(trigger(read_timeout=2.0))
    figures.event(event, status="success")
    assert event["xcom"]["remaining"] == 25 and event["checks"] == 1
    assert sandbox.requests_to("sonarly_quota") == fields["count"] + 1


def test_trigger_gives_up_after_capped_consecutive_failures(sonarly_conn, sandbox, clock, recorded_sleeps, figures):
    sandbox.add_fault("500", endpoint="sonarly_quota", count=None)
    event = first_event(trigger(max_attempts=2))
    figures.event(event, status="error", match=r"HTTP 500 .*failure 3 in a row")
    assert event["fail_fast"] is False
    assert sandbox.requests_to("sonarly_quota") == 3 * 2


def test_trigger_with_connection_refused_ends_with_an_error_event(
    monkeypatch, sandbox, clock, recorded_sleeps, figures
):
    with refused_port() as port:
        point_at(monkeypatch, f"http://127.0.0.1:{port}")
        event = first_event(trigger(max_attempts=2))
    figures.event(event, status="error", match=r"CONNECTION_ERROR.*failure 3 in a row")
    figures.fault("connection refused", 6)
    figures.sent(6)


# --------------------------------------------------------------------------- Indeed tokens


@pytest.mark.parametrize(
    ("kind", "fields", "problem"),
    [
        ("503", {}, r"HTTP 503 .*gave up after 5 attempts"),
        ("reset", {}, r"CONNECTION_ERROR.*gave up after 5 attempts"),
        ("html", {"status": 502}, r"HTTP 502 .*an HTML page"),
        ("stall", {"seconds": 3}, r"TIMEOUT.*gave up after 5 attempts"),
    ],
)
def test_token_endpoint_down_fails_before_any_api_call(
    indeed_conn, sandbox, recorded_sleeps, figures, kind, fields, problem
):
    sandbox.add_fault(kind, endpoint="indeed_token", count=None, **fields)
    run("indeed", figures, expect=QuotaApiError, match=problem, read_timeout=0.5)
    stats = sandbox.stats()
    assert stats["requests"]["indeed_token"] == 5
    assert stats["requests"]["indeed_quota_usage"] == 0  # no call without a token
    assert stats["tokens_issued"] == {}


def test_token_endpoint_back_after_a_burst(indeed_conn, sandbox, recorded_sleeps, figures):
    sandbox.add_fault("503", endpoint="indeed_token", count=3)
    run("indeed", figures)
    stats = sandbox.stats()
    assert (stats["requests"]["indeed_token"], stats["requests"]["indeed_quota_usage"]) == (4, 1)
    assert stats["tokens_issued"] == {"emp-acme": 1}


def _backfill(monkeypatch: pytest.MonkeyPatch, sqlite_conn: str, months: list[str], after_month: Callable[[int], None]):
    table = f"usage_{uuid.uuid4().hex[:8]}"
    operator = IndeedQuotaUsageOperator(task_id="backfill", month=months, sql_conn_id=sqlite_conn, table=table)
    real = operator.hook.get_api_quota_usage
    done: list[Any] = []

    def get_api_quota_usage(month: Any = None) -> Any:
        usage = real(month)
        done.append(month)
        after_month(len(done))
        return usage

    monkeypatch.setattr(operator.hook, "get_api_quota_usage", get_api_quota_usage)
    return operator, table


def test_token_revoked_in_the_middle_of_a_backfill(monkeypatch, indeed_conn, sqlite_conn, sandbox, figures):
    """The API starts refusing the token after month 3 of 8: one renewal, one repeated call, every row once."""
    months = ["122024", "012025", "022025", "032025", "042025", "052025", "062025", "072025"]
    operator, table = _backfill(
        monkeypatch, sqlite_conn, months, lambda done: sandbox.expire_tokens() if done == 3 else None
    )
    records = figures.task(lambda: operator.execute({}))
    assert [record["month"] for record in records] == months
    stats = sandbox.stats()
    assert stats["requests"]["indeed_token"] == 2
    assert stats["requests"]["indeed_quota_usage"] == len(months) + 1  # the one refused call, repeated once
    assert figures.rows({("emp-acme", month) for month in months}, warehouse_keys(sqlite_conn, table)) == (0, 0)


def test_token_lifetime_runs_out_in_the_middle_of_a_backfill(
    monkeypatch, indeed_conn, sqlite_conn, sandbox, clock, figures
):
    """25 minutes per month (time travel): the hook renews the token by the clock before the API refuses it."""
    months = ["122024", "012025", "022025", "032025", "042025", "052025"]
    operator, table = _backfill(monkeypatch, sqlite_conn, months, lambda done: clock.shift(25 * 60))
    records = figures.task(lambda: operator.execute({}))
    assert [record["month"] for record in records] == months
    stats = sandbox.stats()
    assert stats["requests"]["indeed_token"] == 2  # at 0 min, then at 75 min (past 59 min)
    assert stats["requests"]["indeed_quota_usage"] == len(months)  # never a 401
    assert figures.rows({("emp-acme", month) for month in months}, warehouse_keys(sqlite_conn, table)) == (0, 0)
