"""
Hostile input, tried as an attacker would: every byte from the network and every warehouse driver.

One test (or more) per defect the hostile review found (issue 11), each failing on the code
before the hardening: a warehouse that commits every statement, implausible numbers, unbounded
answers, a slow host, ~/.netrc, credentials echoed by the API, cookies across connections,
duplicate months, far times, odd but well-formed answers. MySQL drivers and deadlocks between
runs are proven in tests/unit/test_warehouse.py (they need the MySQL group, or a slow trigger).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from airflow_provider_quota.exceptions import ConnectionConfigError, QuotaApiError, UnexpectedResponseError
from airflow_provider_quota.hooks.indeed import IndeedHook
from airflow_provider_quota.hooks.sonarly import SonarlyHook
from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor
from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger
from airflow_provider_quota.utils.warehouse import get_db_hook
from tests.conftest import INDEED_SECRET, SONARLY_KEY, WAREHOUSES, set_connection, warehouse_conn_id
from tests.reliability.conftest import START, SUITE, first_event, warehouse_keys
from tests.reliability.servers import HostileServer


def gate(**kwargs: Any) -> SonarlyQuotaSensor:
    return SonarlyQuotaSensor(task_id="gate", poke_interval=60, timeout=3600, **kwargs)


def waiting(group: str = "ag_sandbox", **kwargs: Any) -> SonarlyQuotaResetTrigger:
    """A deferred gate whose reset is already past: it checks at once."""
    params: dict[str, Any] = {
        "sonarly_conn_id": "sonarly_default",
        "account_group_id": group,
        "list_type": None,
        "min_remaining": 1,
        "reset_at": datetime.now(timezone.utc) - timedelta(seconds=1),
        "poke_interval": 60.0,
        "jitter": 0.0,
        **kwargs,
    }
    return SonarlyQuotaResetTrigger(**params)


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch, figures: Any) -> Any:
    """``sonarly_default`` on a :class:`HostileServer` (its account group picks the misbehaviour)."""
    with HostileServer() as server:
        set_connection(monkeypatch, "sonarly_default", conn_type="sonarly", host=server.url, password=SONARLY_KEY)
        yield server
    figures.sent(len(server.requests))


@pytest.fixture(params=[p for p in WAREHOUSES if getattr(p, "values", (p,))[0] != "mysql"])
def db(request: pytest.FixtureRequest) -> Any:
    """SQLite and PostgreSQL, whose connections can be forced into autocommit (MySQL upserts natively anyway)."""
    conn_id = warehouse_conn_id(request)
    table = f"hostile_{uuid.uuid4().hex[:10]}"
    yield conn_id, table
    get_db_hook(conn_id).run(f"DROP TABLE IF EXISTS {table}")


# --------------------------------------------------------------------------- 1. atomic writes


def test_a_warehouse_that_commits_every_statement_never_loses_the_previous_row(
    indeed_conn, sandbox, db, monkeypatch, figures
):
    """A hook connecting in autocommit mode that says nothing (Trino's default): a failed write keeps the old row."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from tests.conftest import fail_writes_of

    conn_id, table = db
    months = ["122024", "012025"]
    figures.task(
        lambda: IndeedQuotaUsageOperator(task_id="x", month=months, sql_conn_id=conn_id, table=table).execute({})
    )
    before = sorted(warehouse_keys(conn_id, table))
    remove_failure = fail_writes_of(conn_id, table, "012025")
    hook_class = type(get_db_hook(conn_id))
    connect = hook_class.get_conn

    def autocommitting(self: DbApiHook) -> Any:
        conn = connect(self)
        if self.__class__.__name__ == "SqliteHook":
            conn.isolation_level = None
        else:
            conn.autocommit(True) if callable(getattr(conn, "autocommit", None)) else setattr(conn, "autocommit", True)
        return conn

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hook_class, "get_conn", autocommitting)
        patch.setattr(hook_class, "supports_autocommit", False)
        patch.setattr(hook_class, "dialect_name", "trino")  # no upsert of its own: the portable path
        figures.task(
            lambda: IndeedQuotaUsageOperator(
                task_id="x", month=months, sql_conn_id=conn_id, table=table, create_table=False
            ).execute({}),
            expect=Exception,
            match="injected database failure",
        )
    remove_failure()
    assert figures.rows(before, warehouse_keys(conn_id, table)) == (0, 0)


# --------------------------------------------------------------------------- 2. implausible numbers


@pytest.mark.parametrize(
    ("endpoint", "patch", "field"),
    [
        ("indeed_quota_usage", {"sponsoredJobsSpendAmount": Decimal("1e99999999")}, "sponsoredJobsSpendAmount"),
        ("indeed_quota_usage", {"apiQuota": Decimal("9" * 1000)}, "apiQuota"),
        ("indeed_token", {"expires_in": 2**1100}, "expires_in"),
        ("indeed_quota_usage", {"mmyyyy": "120000"}, "mmyyyy"),
    ],
)
def test_implausible_numbers_are_refused_by_name_once_and_for_all(
    indeed_conn, sandbox, recorded_sleeps, figures, endpoint, patch, field
):
    sandbox.add_fault("patch", endpoint=endpoint, count=None, patch=patch)
    error = figures.task(
        lambda: IndeedQuotaUsageOperator(task_id="x", month="122024").execute({}),
        expect=AirflowFailException,  # no task retry: it would pay for the same answer again
        match=rf"{field}: ",
    )
    assert len(str(error)) < 2000  # nothing was formatted in full
    assert sandbox.requests_to(endpoint) == 1 and recorded_sleeps == []


@pytest.mark.postgres
def test_a_spend_the_warehouse_column_refuses_fails_without_retry(indeed_conn, postgres_conn, sandbox, figures):
    """A DBA's NUMERIC(10, 2): PostgreSQL's range error (a DataError) is no reason to pay the API again."""
    table = f"hostile_{uuid.uuid4().hex[:10]}"
    hook = get_db_hook(postgres_conn)
    hook.run(
        f"CREATE TABLE {table} (employer_id TEXT, month TEXT, month_start DATE, api_quota BIGINT, "
        "requests_count BIGINT, spend_amount NUMERIC(10, 2), currency_code TEXT, extracted_at TIMESTAMPTZ, "
        "PRIMARY KEY (employer_id, month))"
    )
    try:
        sandbox.add_fault("patch", endpoint="indeed_quota_usage", patch={"sponsoredJobsSpendAmount": Decimal("1e12")})
        operator = IndeedQuotaUsageOperator(
            task_id="x", month="122024", sql_conn_id=postgres_conn, table=table, create_table=False
        )
        figures.task(lambda: operator.execute({}), expect=AirflowFailException, match="numeric field overflow")
        assert figures.rows([], warehouse_keys(postgres_conn, table)) == (0, 0)
    finally:
        hook.run(f"DROP TABLE IF EXISTS {table}")


# --------------------------------------------------------------------------- 3. bounded answers


@pytest.mark.parametrize("answer", ["gzip-bomb", "endless"])
def test_answers_past_the_cap_are_refused_on_the_sync_and_the_async_path(hostile, figures, answer):
    error = figures.task(
        lambda: gate(account_group_id=answer).execute({}), expect=AirflowFailException, match="RESPONSE_TOO_LARGE"
    )
    assert "max_response_bytes=4194304" in str(error)
    event = figures.event(first_event(waiting(answer)), status="error", match="RESPONSE_TOO_LARGE")
    assert event["fail_fast"] is True
    assert len(hostile.requests) == 2  # one each: no retry of an answer that will be as large again


def test_a_corrupt_compressed_body_is_a_clear_transient_error_and_raw_deflate_is_read(
    hostile, recorded_sleeps, figures
):
    error = figures.task(
        lambda: SonarlyHook(max_attempts=2).get_prospecting_quota("corrupt-gzip"),
        expect=UnexpectedResponseError,
        match=r"compressed body is corrupt .*\(gave up after 2 attempts\)",
    )
    assert error.retryable and not error.permanent  # a cut or garbled transfer may pass on retry
    assert figures.task(lambda: SonarlyHook().get_prospecting_quota("raw-deflate")).remaining == 22


@pytest.mark.parametrize(("spend", "expected"), [("1." + "0" * 2_000_000, 1), ("0E-99999999", 0)])
def test_insignificant_zeros_are_judged_in_linear_time_and_never_written_out(
    indeed_conn, sandbox, recorded_sleeps, figures, spend, expected
):
    """Two million trailing zeros are counted at once, and neither they nor a tiny zero's 100 million reach XCom."""
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", patch={"sponsoredJobsSpendAmount": Decimal(spend)})
    result = figures.task(lambda: IndeedQuotaUsageOperator(task_id="x", month="122024").execute({}))
    assert Decimal(result["spend_amount"]) == expected
    assert len(result["spend_amount"]) <= 2 + 30  # at most the 30 places every warehouse column holds


# --------------------------------------------------------------------------- 4. a slow host


def test_a_dripping_host_ends_at_the_deadline_and_never_stalls_another_connection(
    hostile, sandbox_server, monkeypatch, sandbox, figures
):
    set_connection(monkeypatch, "healthy", conn_type="sonarly", host=sandbox_server.url, password=SONARLY_KEY)
    error = figures.task(
        lambda: SonarlyHook(deadline=2, max_attempts=1).get_prospecting_quota("drip"),
        expect=QuotaApiError,
        match=r"TIMEOUT: .*no complete answer within deadline=2 s",
    )
    assert error.retryable

    async def race() -> list[str]:
        finished: list[str] = []

        async def run(name: str, trigger: SonarlyQuotaResetTrigger) -> None:
            async for _ in trigger.run():
                finished.append(name)
                return

        # 15 list types: 15 quotas, so 15 requests in flight (one quota's gates would share one).
        dripping = [
            asyncio.ensure_future(run("drip", waiting("drip", list_type=f"T{n}", hook_params={"deadline": 30})))
            for n in range(15)
        ]
        await asyncio.sleep(0.5)  # every slot of the dripping connection is taken
        await asyncio.wait_for(run("healthy", waiting(sonarly_conn_id="healthy")), timeout=20)
        for task in dripping:
            task.cancel()
        await asyncio.gather(*dripping, return_exceptions=True)
        return finished

    assert asyncio.run(race()) == ["healthy"]  # served while 15 requests of another host were still dripping


def test_waiting_for_a_request_slot_is_not_part_of_the_deadline(sonarly_conn, sandbox, figures):
    """20 calls on one connection of 10 slots, each answered in 1 s: the second ten wait 1 s for a slot, then pass."""
    sandbox.add_fault("stall", endpoint="sonarly_quota", count=None, seconds=1.0)

    async def twenty() -> list[Any]:
        hook = SonarlyHook(deadline=1.8, max_attempts=1)
        return await asyncio.gather(*(hook.aget_prospecting_quota() for _ in range(20)), return_exceptions=True)

    answers = figures.task(lambda: asyncio.run(twenty()))
    assert [type(answer).__name__ for answer in answers] == ["ProspectingQuota"] * 20
    assert sandbox.requests_to("sonarly_quota") == 20


# --------------------------------------------------------------------------- 5. nothing from the environment


def test_netrc_never_replaces_or_adds_a_credential(hostile, monkeypatch, tmp_path, figures):
    netrc = tmp_path / ".netrc"
    netrc.write_text("default login netrc-user password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    set_connection(monkeypatch, "indeed_default", conn_type="indeed", host=hostile.url, login="id", password="secret")
    figures.task(lambda: gate(account_group_id="ag_sandbox").execute({}))
    figures.event(first_event(waiting()), status="success")
    figures.task(lambda: IndeedHook().test_connection())  # a token request: the client secret goes in the form only
    sent = {(method, path.split("?")[0]): headers.get("Authorization") for method, path, headers in hostile.requests}
    assert sent == {
        ("GET", "/v1/accounts/ag_sandbox/prospecting/quota"): f"Bearer {SONARLY_KEY}",
        ("POST", "/oauth/v2/tokens"): None,
    }


# --------------------------------------------------------------------------- 7. credentials never echoed


def test_an_api_that_quotes_the_credentials_it_received_never_gets_them_echoed(
    sonarly_conn, indeed_conn, sandbox, sandbox_server, recorded_sleeps, figures
):
    for endpoint in ("sonarly_quota", "sonarly_accounts"):
        sandbox.add_fault("status", status=401, endpoint=endpoint, count=None, echo_request=True)
    sandbox.add_fault("status", status=401, endpoint="indeed_token", count=1, echo_request=True)
    sandbox.add_fault("status", status=401, endpoint="indeed_quota_usage", count=None, echo_request=True)
    error = figures.task(
        lambda: gate().execute({}), expect=AirflowFailException, match=r"Received Authorization: 'Bearer \*\*\*'"
    )
    event = figures.event(first_event(waiting()), status="error", match=r"Bearer \*\*\*")
    ok, message = SonarlyHook().test_connection()
    figures.evidence("test connection", message)
    token_error = figures.task(
        lambda: IndeedQuotaUsageOperator(task_id="x", month="122024").execute({}),
        expect=AirflowFailException,
        match=r"client_secret=\*\*\*",
    )
    usage_error = figures.task(
        lambda: IndeedQuotaUsageOperator(task_id="x", month="122024").execute({}),
        expect=AirflowFailException,
        match=r"Bearer \*\*\*",
    )
    with sandbox_server.state.lock:
        tokens = list(sandbox_server.state.tokens)
    assert tokens  # the sandbox issued the tokens the usage calls sent (and got quoted back)
    for text in (str(error), event["message"], message, str(token_error), str(usage_error)):
        assert SONARLY_KEY not in text and INDEED_SECRET not in text
        assert not any(token in text for token in tokens)
    assert not ok


def test_a_header_that_quotes_the_key_never_gets_it_echoed(hostile, figures):
    error = figures.task(
        lambda: gate(account_group_id="echo-html").execute({}), expect=AirflowFailException, match="an HTML page"
    )
    assert SONARLY_KEY not in str(error) and SONARLY_KEY.lower() not in str(error)


def test_a_redirect_fails_at_once_naming_where_it_points(hostile, figures):
    """Redirects are never followed (the key must not go to another host): retrying gets the same answer."""
    figures.task(
        lambda: gate(account_group_id="moved").execute({}),
        expect=AirflowFailException,  # permanent: no task retry
        match=r"HTTP 308 with a redirect to elsewhere\.example, which is not followed",
    )
    assert len(hostile.requests) == 1  # no hook retry either


# --------------------------------------------------------------------------- 9. nothing shared between connections


def test_cookies_are_never_kept_nor_sent_to_another_connection(hostile, monkeypatch, figures):
    """Connection A is answered with a Set-Cookie while the triggerer's clients are busy: B and A send no cookie."""
    set_connection(monkeypatch, "other", conn_type="sonarly", host=hostile.url, password=SONARLY_KEY)

    async def one_after_another() -> None:
        busy = asyncio.ensure_future(SonarlyHook(max_attempts=1).aget_prospecting_quota("drip"))  # a long request
        await asyncio.sleep(0.2)
        for conn_id in ("sonarly_default", "other", "sonarly_default"):
            await SonarlyHook(conn_id).aget_prospecting_quota("ag_sandbox")
        busy.cancel()
        await asyncio.gather(busy, return_exceptions=True)

    asyncio.run(one_after_another())
    figures.task(lambda: SonarlyHook("other").get_prospecting_quota("ag_sandbox"))
    quota_calls = [headers for _, path, headers in hostile.requests if "/ag_sandbox/" in path]
    assert len(quota_calls) == 4
    assert [headers.get("Cookie") for headers in quota_calls] == [None] * 4


# --------------------------------------------------------------------------- 10. duplicate months


def test_current_and_this_month_are_one_paid_call(indeed_conn, sandbox, figures):
    with time_machine.travel(START, tick=True):
        result = figures.task(
            lambda: IndeedQuotaUsageOperator(task_id="x", month=["current", "112026", "2026-11"]).execute({})
        )
    assert [record["month"] for record in result] == ["112026"]
    assert sandbox.requests_to("indeed_quota_usage") == 1


# --------------------------------------------------------------------------- 11. far times


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "patch", "patch": {"exhausted": True, "resetAt": "9999-12-31T23:59:59.999Z"}},
        {"kind": "429", "retry_after": "300000000000"},
    ],
)
def test_far_times_end_the_wait_cleanly(sonarly_conn, sandbox, clock, recorded_sleeps, figures, fault):
    """A "never" resetAt, a Retry-After of ten thousand years: a clean timeout, never an OverflowError."""
    kind = fault.pop("kind")
    sandbox.add_fault(kind, endpoint="sonarly_quota", count=None, **fault)
    deadline = START + timedelta(hours=6)
    event = figures.event(
        first_event(waiting(deadline=deadline, reset_at=START - timedelta(seconds=1))), status="timeout"
    )
    assert sandbox.requests_to("sonarly_quota") == 1  # checked once, then nothing it could wait for in time
    assert "after the sensor's timeout" in event["message"]
    if kind == "patch":  # the same answer in a worker: a timeout at once, as in poke and reschedule mode
        figures.task(lambda: gate(deferrable=True).execute({}), expect=AirflowSensorTimeout, match="resets at 9999")


def test_a_reset_that_keeps_moving_costs_a_check_per_ten_seconds_not_per_second(hostile, clock, figures):
    """A spent quota whose resetAt is always just ahead: each reset after a reset is awaited at least 10 s."""
    deadline = START + timedelta(minutes=10)
    figures.event(first_event(waiting("moving-reset", deadline=deadline)), status="timeout")
    assert len(hostile.requests) <= 10 * 60 / 10 + 1  # 60 checks in 10 minutes at most (~1,000 without the floor)
    assert all(seconds > 9.9 for seconds in clock.slept), clock.slept  # 10 s from the check, less its own time
    hostile.requests.clear()
    poking = SonarlyQuotaSensor(task_id="gate", account_group_id="moving-reset", poke_interval=60, timeout=600)
    figures.task(lambda: poking.execute({}), expect=AirflowSensorTimeout)
    assert len(hostile.requests) <= 10 * 60 / 10 + 2  # the same in poke mode (its first reset is awaited as announced)


# --------------------------------------------------------------------------- 12. odd but well-formed answers


def test_json_nested_too_deep_is_an_unexpected_answer_not_a_recursion_error(hostile, figures):
    error = figures.task(
        lambda: SonarlyHook().get_prospecting_quota("deep"), expect=UnexpectedResponseError, match="nested too deep"
    )
    assert error.permanent


@pytest.mark.parametrize("secret", ["sk_live_clé", "sk_live_\u20ac", "sk_live_\u00a0x"])
def test_credentials_no_header_can_carry_are_refused_before_any_request_on_both_paths(
    monkeypatch, sandbox_server, sandbox, figures, secret
):
    SUITE.extra_secrets.add(secret)
    set_connection(monkeypatch, "sonarly_default", conn_type="sonarly", host=sandbox_server.url, password=secret)
    figures.task(
        lambda: SonarlyHook().get_prospecting_quota("ag_sandbox"), expect=ConnectionConfigError, match="API key"
    )
    figures.event(first_event(waiting()), status="error", match="non-ASCII|a space|control character")
    assert sandbox.stats()["total_requests"] == 0
