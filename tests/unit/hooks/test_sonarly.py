"""SonarlyHook over real HTTP against the sandbox."""

from __future__ import annotations

import logging
from datetime import timezone

import pytest

from airflow_provider_quota.exceptions import (
    ConnectionConfigError,
    InvalidParameterError,
    QuotaApiError,
    UnexpectedResponseError,
)
from airflow_provider_quota.hooks.sonarly import SonarlyHook
from airflow_provider_quota.models import ProspectingQuota
from tests.conftest import SONARLY_KEY, SONARLY_KEY_WITHOUT_PROSPECTING, set_connection


def test_get_prospecting_quota_sends_bearer_key_and_parses_quota(sonarly_conn, sandbox):
    quota = SonarlyHook().get_prospecting_quota()

    assert isinstance(quota, ProspectingQuota)
    assert (quota.list_type, quota.quota_type, quota.used, quota.limit, quota.remaining) == (
        "LINKEDIN_CLASSIC",
        "linkedinClassicSearch",
        0,
        25,
        25,
    )
    assert quota.exhausted is False
    assert quota.reset_at is not None and quota.reset_at.tzinfo == timezone.utc
    assert quota.trace_id and len(quota.trace_id) == 24
    request = sandbox.recent_requests()[-1]
    assert request["raw_path"] == "/v1/accounts/ag_sandbox/prospecting/quota"
    assert request["query"] == ""  # listType only when given


def test_list_type_is_sent_only_when_given(sonarly_conn, sandbox):
    quota = SonarlyHook().get_prospecting_quota("ag_growth", list_type="SALES_NAVIGATOR")
    assert quota.quota_type == "salesNavigatorSearch"
    request = sandbox.recent_requests()[-1]
    assert request["raw_path"] == "/v1/accounts/ag_growth/prospecting/quota"
    assert request["query"] == "listType=SALES_NAVIGATOR"


def test_xcom_form_is_json(sonarly_conn, sandbox):
    sandbox.set_quota("ag_sandbox", used=25)
    dumped = SonarlyHook().get_prospecting_quota().model_dump(mode="json")
    assert dumped["exhausted"] is True and dumped["remaining"] == 0
    assert isinstance(dumped["reset_at"], str) and dumped["reset_at"].endswith("Z")
    assert set(dumped) == {"list_type", "quota_type", "used", "limit", "remaining", "reset_at", "exhausted", "trace_id"}


def test_bad_key_raises_401_with_code_message_and_trace_id_without_retry(monkeypatch, sandbox_server, sandbox):
    set_connection(monkeypatch, "bad", conn_type="sonarly", host=sandbox_server.url, password="sk_live_wrong")
    with pytest.raises(QuotaApiError) as caught:
        SonarlyHook("bad").get_prospecting_quota("ag_sandbox")
    error = caught.value
    assert (error.status, error.code, error.retryable) == (401, "UNAUTHORIZED", False)
    assert "Invalid or missing API key" in str(error) and f"traceId {error.trace_id}" in str(error)
    assert "sk_live_wrong" not in str(error)
    assert sandbox.requests_to("sonarly_quota") == 1


def test_missing_permission_raises_403_once(monkeypatch, sandbox_server, sandbox):
    set_connection(
        monkeypatch, "ro", conn_type="sonarly", host=sandbox_server.url, password=SONARLY_KEY_WITHOUT_PROSPECTING
    )
    with pytest.raises(QuotaApiError, match=r"HTTP 403 FORBIDDEN: Missing required permission: prospecting:read"):
        SonarlyHook("ro").get_prospecting_quota("ag_sandbox")
    assert sandbox.requests_to("sonarly_quota") == 1


def test_400_is_not_retried(sonarly_conn, sandbox, recorded_sleeps):
    with pytest.raises(QuotaApiError) as caught:
        SonarlyHook().get_prospecting_quota(list_type="NOT_A_LIST")
    assert (caught.value.status, caught.value.code) == (400, "VALIDATION_ERROR")
    assert caught.value.trace_id
    assert sandbox.requests_to("sonarly_quota") == 1
    assert recorded_sleeps == []


def test_success_false_with_http_200_raises(sonarly_conn, sandbox):
    sandbox.add_fault("success_false")
    with pytest.raises(QuotaApiError, match=r"HTTP 200 INTERNAL_ERROR: The request could not be processed"):
        SonarlyHook().get_prospecting_quota()


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("malformed", r"HTTP 200 .*malformed JSON"),
        ("html", r"HTTP 502 .*an HTML page"),
    ],
)
def test_unexpected_bodies_name_the_problem(sonarly_conn, sandbox, recorded_sleeps, fault, expected):
    sandbox.add_fault(fault, count=10)
    with pytest.raises(QuotaApiError, match=expected):
        SonarlyHook(max_attempts=2).get_prospecting_quota()


def test_missing_field_is_named(sonarly_conn, sandbox):
    sandbox.add_fault("patch", remove=["remaining"])
    with pytest.raises(UnexpectedResponseError, match=r"remaining: Field required") as caught:
        SonarlyHook().get_prospecting_quota()
    assert caught.value.trace_id


def test_unknown_extra_fields_are_ignored(sonarly_conn, sandbox):
    sandbox.add_fault("patch", patch={"newFeature": {"x": 1}, "anotherCounter": 7})
    assert SonarlyHook().get_prospecting_quota().remaining == 25


@pytest.mark.parametrize("group", ["../admin", "a/b", "x?listType=ALL", "x#frag", "with space", "déjà-vu", "%2e%2e"])
def test_account_group_id_is_one_encoded_path_segment(sonarly_conn, sandbox, group):
    sandbox.set_quota(group, used=1)  # the sandbox knows this odd id
    quota = SonarlyHook().get_prospecting_quota(group)
    assert quota.used == 1
    request = sandbox.recent_requests()[-1]
    assert request["raw_path"].startswith("/v1/accounts/") and request["raw_path"].endswith("/prospecting/quota")
    assert request["raw_path"].count("/") == 5
    assert request["query"] == ""


@pytest.mark.parametrize("group", ["", "..", ".", " padded", "tab\there", "x" * 300])
def test_impossible_account_group_ids_are_refused_before_any_request(sonarly_conn, sandbox, group):
    with pytest.raises(InvalidParameterError, match="account_group_id"):
        SonarlyHook().get_prospecting_quota(group)
    assert sandbox.stats()["total_requests"] == 0


def test_account_group_falls_back_to_connection_extra_or_says_what_is_missing(monkeypatch, sandbox_server, sandbox):
    set_connection(monkeypatch, "no_group", conn_type="sonarly", host=sandbox_server.url, password=SONARLY_KEY)
    with pytest.raises(ConnectionConfigError, match=r"pass account_group_id, or set the extra 'account_group_id'"):
        SonarlyHook("no_group").get_prospecting_quota()
    assert SonarlyHook("no_group").get_prospecting_quota("ag_growth").limit == 25


def test_list_account_groups_and_test_connection(sonarly_conn, sandbox):
    hook = SonarlyHook()
    assert [group.id for group in hook.list_account_groups()] == ["ag_sandbox", "ag_growth"]
    ok, message = hook.test_connection()
    assert ok and "sees 2 account group(s)" in message
    assert sandbox.requests_to("sonarly_accounts") == 2
    assert sandbox.requests_to("sonarly_quota") == 0


def test_test_connection_reports_failure(monkeypatch, sandbox_server, sandbox):
    set_connection(monkeypatch, "bad", conn_type="sonarly", host=sandbox_server.url, password="sk_live_wrong")
    ok, message = SonarlyHook("bad").test_connection()
    assert not ok and "401" in message and "sk_live_wrong" not in message


def test_missing_connection_and_wrong_type_are_named(monkeypatch, sandbox_server):
    with pytest.raises(Exception, match="nope_conn"):
        SonarlyHook("nope_conn").get_prospecting_quota("ag")
    set_connection(monkeypatch, "pg", conn_type="postgres", host="db", password="x")
    with pytest.raises(
        ConnectionConfigError, match=r"'pg' is of type 'postgres'.*needs a connection of type 'sonarly'"
    ):
        SonarlyHook("pg").get_prospecting_quota("ag")


def test_connection_without_key_is_refused(monkeypatch, sandbox_server):
    set_connection(monkeypatch, "nokey", conn_type="sonarly", host=sandbox_server.url)
    with pytest.raises(ConnectionConfigError, match=r"has no API key.*'API key'"):
        SonarlyHook("nokey").get_prospecting_quota("ag")


def test_key_never_reaches_logs_or_errors(sonarly_conn, sandbox, recorded_sleeps, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    sandbox.add_fault("429", count=1, retry_after="1")
    sandbox.add_fault("reset", count=1)
    hook = SonarlyHook()
    hook.get_prospecting_quota()
    hook.test_connection()
    sandbox.add_fault("status", status=401)
    with pytest.raises(QuotaApiError) as caught:
        hook.get_prospecting_quota()
    out, err = capfd.readouterr()
    everything = caplog.text + out + err + str(caught.value) + repr(caught.value) + repr(hook)
    assert "retry 1 of 4" in everything  # the retries were logged...
    assert SONARLY_KEY not in everything  # ...without the key
