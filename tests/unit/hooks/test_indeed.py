"""IndeedHook over real HTTP against the sandbox: tokens, months, money, errors."""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
import time_machine

from airflow_provider_quota.exceptions import (
    ConnectionConfigError,
    InvalidParameterError,
    QuotaApiError,
    UnexpectedResponseError,
)
from airflow_provider_quota.hooks.indeed import IndeedHook
from airflow_provider_quota.models import ApiQuotaUsage
from tests.conftest import INDEED_CLIENT_ID, INDEED_SECRET, set_connection


def test_quota_usage_for_a_month(indeed_conn, sandbox):
    usage = IndeedHook().get_api_quota_usage("122024")
    assert isinstance(usage, ApiQuotaUsage)
    assert (usage.employer_id, usage.month, usage.month_start) == ("emp-acme", "122024", date(2024, 12, 1))
    assert usage.api_quota in (1500, 3000, 5000)
    assert usage.requests_count == sum(record["requestsCount"] for record in usage.api_usage)
    assert isinstance(usage.spend_amount, Decimal) and usage.currency_code == "USD"
    assert sandbox.recent_requests()[-1]["query"] == "monthYear=122024"


@pytest.mark.parametrize("month", ["2025-03", date(2025, 3, 1), datetime(2025, 3, 17, 8, tzinfo=timezone.utc)])
def test_month_forms_are_sent_as_mmyyyy(indeed_conn, sandbox, month):
    assert IndeedHook().get_api_quota_usage(month).month == "032025"
    assert sandbox.recent_requests()[-1]["query"] == "monthYear=032025"


def test_current_month_omits_the_parameter(indeed_conn, sandbox):
    usage = IndeedHook().get_api_quota_usage()
    now = datetime.now(timezone.utc)
    assert usage.month == f"{now.month:02d}{now.year}"
    assert sandbox.recent_requests()[-1]["query"] == ""


def test_spend_keeps_every_decimal(indeed_conn, sandbox):
    usage = IndeedHook(employer_id="emp-precise-1").get_api_quota_usage("012025")
    assert usage.spend_amount == Decimal("1235.567890123456789012345")
    assert usage.model_dump(mode="json")["spend_amount"] == "1235.567890123456789012345"


def test_one_token_for_many_calls(indeed_conn, sandbox):
    hook = IndeedHook()
    for month in ("122024", "012025", "022025", "032025"):
        hook.get_api_quota_usage(month)
    IndeedHook().get_api_quota_usage("042025")  # another hook in the same process reuses it too
    stats = sandbox.stats()
    assert stats["requests"]["indeed_token"] == 1
    assert stats["tokens_issued"] == {"emp-acme": 1}
    assert stats["requests"]["indeed_quota_usage"] == 5


def test_one_token_per_employer(indeed_conn, sandbox):
    for employer in ("emp-a", "emp-b", "emp-a", "emp-b"):
        IndeedHook(employer_id=employer).get_api_quota_usage("122024")
    assert sandbox.stats()["tokens_issued"] == {"emp-a": 1, "emp-b": 1}


def test_token_request_form(indeed_conn, sandbox):
    IndeedHook().get_api_quota_usage("122024")
    token_request = sandbox.recent_requests()[0]
    assert token_request["endpoint"] == "indeed_token" and token_request["method"] == "POST"


def test_401_refreshes_the_token_once_and_retries_once(indeed_conn, sandbox):
    hook = IndeedHook()
    hook.get_api_quota_usage("122024")
    sandbox.expire_tokens()
    assert hook.get_api_quota_usage("012025").month == "012025"
    stats = sandbox.stats()
    assert stats["requests"]["indeed_token"] == 2
    assert stats["requests"]["indeed_quota_usage"] == 3  # ok, 401, retried ok


def test_persistent_401_fails_after_one_refresh(indeed_conn, sandbox):
    sandbox.add_fault("status", status=401, endpoint="indeed_quota_usage", count=5)
    with pytest.raises(QuotaApiError) as caught:
        IndeedHook().get_api_quota_usage("122024")
    assert caught.value.status == 401
    assert sandbox.stats()["requests"]["indeed_token"] == 2
    assert sandbox.stats()["requests"]["indeed_quota_usage"] == 2


def test_token_renewed_before_expiry_by_the_clock(indeed_conn, sandbox):
    hook = IndeedHook()
    with time_machine.travel(datetime.now(timezone.utc), tick=True) as traveller:
        hook.get_api_quota_usage("122024")
        traveller.shift(3000)  # 50 minutes: still fresh (renewed 60 s before the hour)
        hook.get_api_quota_usage("012025")
        assert sandbox.stats()["requests"]["indeed_token"] == 1
        traveller.shift(560)  # 59 min 20 s: inside the safety margin
        hook.get_api_quota_usage("022025")
    assert sandbox.stats()["requests"]["indeed_token"] == 2
    assert sandbox.stats()["requests"]["indeed_quota_usage"] == 3  # no 401 was needed


def test_400_invalid_request_is_not_retried(indeed_conn, sandbox, recorded_sleeps):
    sandbox.add_fault("status", status=400, endpoint="indeed_quota_usage")
    with pytest.raises(QuotaApiError, match=r"HTTP 400 HTTP_400: Injected fault") as caught:
        IndeedHook().get_api_quota_usage("122024")
    assert caught.value.retryable is False
    assert sandbox.stats()["requests"]["indeed_quota_usage"] == 1
    assert recorded_sleeps == []


def test_403_insufficient_scope_names_the_error_type(monkeypatch, sandbox_server, sandbox):
    set_connection(
        monkeypatch,
        "narrow",
        conn_type="indeed",
        host=sandbox_server.url,
        login=INDEED_CLIENT_ID,
        password=INDEED_SECRET,
        extra={"employer_id": "emp-acme", "scope": "employer_access"},
    )
    with pytest.raises(QuotaApiError, match=r"HTTP 403 INSUFFICIENT_SCOPE: This API requires"):
        IndeedHook("narrow").get_api_quota_usage("122024")
    assert sandbox.stats()["requests"]["indeed_quota_usage"] == 1


def test_bad_client_secret_fails_at_the_token_endpoint_without_retry(monkeypatch, sandbox_server, sandbox):
    set_connection(
        monkeypatch, "bad", conn_type="indeed", host=sandbox_server.url, login=INDEED_CLIENT_ID, password="wrong-secret"
    )
    with pytest.raises(QuotaApiError, match=r"HTTP 401 invalid_client: Client authentication failed") as caught:
        IndeedHook("bad", employer_id="emp-acme").get_api_quota_usage("122024")
    assert "wrong-secret" not in str(caught.value)
    assert sandbox.stats()["requests"] == {
        "sonarly_accounts": 0,
        "sonarly_quota": 0,
        "indeed_token": 1,
        "indeed_quota_usage": 0,
    }


def test_no_employer_is_refused_before_any_request(monkeypatch, sandbox_server, sandbox):
    set_connection(monkeypatch, "noemp", conn_type="indeed", host=sandbox_server.url, login="a", password="b")
    with pytest.raises(ConnectionConfigError, match=r"needs a token that represents an employer"):
        IndeedHook("noemp").get_api_quota_usage("122024")
    with pytest.raises(InvalidParameterError, match="employer_id"):
        IndeedHook("noemp", employer_id="").get_api_quota_usage("122024")
    assert sandbox.stats()["total_requests"] == 0


def test_employer_id_travels_encoded_in_the_form(indeed_conn, sandbox):
    usage = IndeedHook(employer_id="emp/../x?y=1&z#é").get_api_quota_usage("122024")
    assert usage.employer_id == "emp/../x?y=1&z#é"
    assert sandbox.stats()["tokens_issued"] == {"emp/../x?y=1&z#é": 1}


def test_answer_for_another_month_is_refused(indeed_conn, sandbox):
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", patch={"mmyyyy": "022025"})
    with pytest.raises(UnexpectedResponseError, match=r"asked for month 012025 but the API answered month 022025"):
        IndeedHook().get_api_quota_usage("012025")


@pytest.mark.parametrize(
    ("patch", "remove", "problem"),
    [
        ({}, ["apiQuota"], r"apiQuota: Field required"),
        ({"apiQuota": -1}, [], r"apiQuota: Input should be greater than or equal to 0"),
        ({"apiQuota": 2**64}, [], r"apiQuota: Input should be less than or equal to"),
        ({"currencyCode": "dollars"}, [], r"currencyCode: String should match pattern"),
        ({"apiUsage": [{"requestsCount": "many"}]}, [], r"requestsCount: Input should be a valid integer"),
    ],
)
def test_bad_data_is_named(indeed_conn, sandbox, patch, remove, problem):
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", patch=patch, remove=remove)
    with pytest.raises(UnexpectedResponseError, match=problem):
        IndeedHook().get_api_quota_usage("122024")


def test_test_connection_gets_a_token_and_never_calls_the_api(indeed_conn, sandbox):
    ok, message = IndeedHook().test_connection()
    assert ok
    assert "employer emp-acme" in message and "'employer.advertising.account.read'" in message and "3600 s" in message
    assert sandbox.stats()["requests"]["indeed_quota_usage"] == 0


def test_secret_and_tokens_never_reach_logs_or_errors(indeed_conn, sandbox, caplog, capfd, recorded_sleeps):
    from airflow_provider_quota.hooks import indeed

    caplog.set_level(logging.DEBUG)
    hook = IndeedHook()
    hook.get_api_quota_usage("122024")
    sandbox.expire_tokens()
    sandbox.add_fault("500", endpoint="indeed_quota_usage", count=1)
    hook.get_api_quota_usage("012025")
    hook.test_connection()
    tokens = [cached.value for cached in indeed._TOKENS.values()]
    sandbox.add_fault("status", status=403, endpoint="indeed_quota_usage")
    with pytest.raises(QuotaApiError) as caught:
        hook.get_api_quota_usage("022025")
    out, err = capfd.readouterr()
    everything = caplog.text + out + err + str(caught.value) + repr(hook) + repr(indeed._TOKENS)
    assert "Obtained an Indeed access token" in everything
    assert tokens and all(token.startswith("sbx_at_") for token in tokens)
    for secret in (INDEED_SECRET, *tokens):
        assert secret not in everything
