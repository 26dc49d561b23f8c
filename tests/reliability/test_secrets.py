"""
Secrets and transport security.

TLS verification is on by default (a self-signed certificate is refused, once, with a clear
message; trusting it makes the same call succeed), plain ``http://`` to a remote host is refused
unless the connection allows it, and no credential reaches a log, an exception, an XCom value, a
rendered template field or a serialized trigger. The last test scans everything this suite emitted.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_provider_quota.exceptions import ConnectionConfigError, QuotaApiError, TlsVerificationError
from airflow_provider_quota.hooks.sonarly import SonarlyHook
from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor
from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger
from tests.conftest import SONARLY_KEY, indeed_at, set_connection, sonarly_at
from tests.reliability.conftest import START, SUITE, first_event
from tests.reliability.servers import HttpsQuotaServer


def reset_trigger() -> SonarlyQuotaResetTrigger:
    """The trigger of a gate on ag_sandbox whose quota resets five minutes after START."""
    return SonarlyQuotaResetTrigger(
        sonarly_conn_id="sonarly_default",
        account_group_id="ag_sandbox",
        list_type=None,
        min_remaining=1,
        reset_at=START + timedelta(minutes=5),
        poke_interval=60.0,
    )


def gate(**kwargs: Any) -> SonarlyQuotaSensor:
    return SonarlyQuotaSensor(task_id="gate", poke_interval=60, timeout=3600, **kwargs)


# --------------------------------------------------------------------------- TLS


@pytest.fixture
def https_server(tmp_path: Any, figures: Any) -> Any:
    with HttpsQuotaServer(tmp_path) as server:
        yield server
    figures.sent(server.handshakes)
    figures.fault("self-signed TLS certificate", server.handshakes - server.requests)


def test_self_signed_certificate_fails_the_gate_at_once(monkeypatch, https_server, recorded_sleeps, figures):
    sonarly_at(monkeypatch, https_server.url)
    error = figures.task(
        lambda: gate(mode="poke").execute({}),
        expect=AirflowFailException,  # permanent: neither the hook nor Airflow retries it
        match=r"TLS_VERIFICATION_FAILED: .*https://127\.0\.0\.1:\d+ failed verification \(self.signed certificate in",
    )
    assert isinstance(error.__cause__, TlsVerificationError) and not error.__cause__.retryable
    assert (https_server.handshakes, https_server.requests) == (1, 0)  # one attempt, nothing sent in clear
    assert recorded_sleeps == []


def test_self_signed_certificate_fails_the_extraction_at_once(monkeypatch, https_server, recorded_sleeps, figures):
    indeed_at(monkeypatch, https_server.url)
    operator = IndeedQuotaUsageOperator(task_id="extract", month="122024")
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=r"TLS_VERIFICATION_FAILED")
    assert (https_server.handshakes, https_server.requests) == (1, 0)  # the client secret was never sent
    assert recorded_sleeps == []


def test_self_signed_certificate_ends_the_trigger_at_once(monkeypatch, https_server, clock, recorded_sleeps, figures):
    sonarly_at(monkeypatch, https_server.url)
    trigger = reset_trigger()
    event = figures.event(first_event(trigger), status="error", match=r"TLS_VERIFICATION_FAILED")
    assert event["fail_fast"] is True and event["checks"] == 1
    assert (https_server.handshakes, https_server.requests) == (1, 0)
    assert recorded_sleeps == []


def test_the_same_server_trusted_explicitly_answers(monkeypatch, https_server, clock, figures):
    """The control: the refusals above come from verification alone, and verification stays on when trusted."""
    sonarly_at(monkeypatch, https_server.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(https_server.cert_path))  # requests
    monkeypatch.setenv("SSL_CERT_FILE", str(https_server.cert_path))  # httpx
    assert figures.task(lambda: gate(mode="poke").execute({}))["remaining"] == 22
    trigger = reset_trigger()
    figures.event(first_event(trigger), status="success")
    assert https_server.requests == 2


def connect_error(cause: BaseException) -> httpx.ConnectError:
    """What httpx raises for a failed connection: a ConnectError caused by the OS's or the TLS library's error."""
    error = httpx.ConnectError(str(cause))
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("make", "retryable"),
    [
        (lambda: connect_error(ssl.SSLCertVerificationError(1, "certificate verify failed")), False),
        (lambda: connect_error(ssl.SSLEOFError(8, "EOF occurred in violation of protocol")), True),
        (lambda: connect_error(ConnectionRefusedError(111, "Connection refused")), True),
    ],
)
def test_only_certificate_failures_are_permanent(sonarly_conn, make, retryable, figures):
    """Regression, unit level: a cut handshake may pass on retry, an untrusted certificate never does."""
    error = SonarlyHook()._transport_error(make(), "GET", "/v1/accounts")
    assert error.retryable is retryable
    assert isinstance(error, TlsVerificationError) is not retryable


# --------------------------------------------------------------------------- plain http


@pytest.mark.parametrize(
    "host",
    [
        "http://api.sonarly.io",
        "http://10.0.0.5:8080",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
    ],
)
def test_plain_http_to_a_remote_host_is_refused_before_any_request(monkeypatch, sandbox, figures, host):
    sonarly_at(monkeypatch, host)
    indeed_at(monkeypatch, host)
    problem = r"'(sonarly|indeed)_default': host .* plain http:// to a host that is not loopback.*allow_insecure_http"
    figures.task(lambda: gate(mode="poke").execute({}), expect=AirflowFailException, match=problem)
    operator = IndeedQuotaUsageOperator(task_id="extract", month="122024")
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=problem)


def test_plain_http_is_accepted_when_the_connection_says_so(monkeypatch, figures):
    sonarly_at(monkeypatch, "http://sonarly.internal:8080", allow_insecure_http=True)
    assert SonarlyHook().base_url == "http://sonarly.internal:8080"
    sonarly_at(monkeypatch, "sonarly.internal")  # a bare host name means https://
    assert SonarlyHook().base_url == "https://sonarly.internal"


def test_loopback_http_is_accepted_for_the_sandbox(sonarly_conn, sandbox, figures):
    assert figures.task(lambda: gate(mode="poke").execute({}))["remaining"] == 25


# --------------------------------------------------------------------------- where secrets could go


def test_deferral_serializes_no_secret(sonarly_conn, sandbox, clock, figures):
    from airflow.sdk.serde import serialize

    sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=600)
    sensor = gate(deferrable=True, hook_params={"read_timeout": 5, "max_attempts": 3})
    deferred = figures.task(lambda: sensor.execute({}), expect=TaskDeferred)
    _, kwargs = deferred.trigger.serialize()
    stored = json.dumps(serialize(kwargs))  # what the metadata database keeps
    figures.evidence("trigger kwargs", stored)
    figures.evidence("trigger kwargs", repr(deferred.trigger))
    assert set(kwargs) == {
        "sonarly_conn_id",
        "account_group_id",
        "list_type",
        "min_remaining",
        "reset_at",
        "poke_interval",
        "jitter",
        "hook_params",
        "deadline",
        "waiting_since",
    }
    assert kwargs["hook_params"] == {"read_timeout": 5, "max_attempts": 3}
    assert SONARLY_KEY not in stored and "Bearer" not in stored
    event = figures.event(first_event(type(deferred.trigger)(**kwargs)), status="success")
    assert figures.task(lambda: sensor.execute_complete({}, event))["remaining"] == 25


def test_errors_with_wrong_credentials_do_not_echo_them(monkeypatch, sandbox_server, sandbox, recorded_sleeps, figures):
    wrong_key, wrong_secret = f"sk_live_{uuid.uuid4().hex}", f"secret-{uuid.uuid4().hex}"
    SUITE.extra_secrets.update({wrong_key, wrong_secret})
    set_connection(monkeypatch, "sonarly_default", conn_type="sonarly", host=sandbox_server.url, password=wrong_key)
    indeed_at(monkeypatch, sandbox_server.url, password=wrong_secret)
    figures.task(
        lambda: gate(mode="poke", account_group_id="ag_sandbox").execute({}),
        expect=AirflowFailException,
        match=r"HTTP 401 UNAUTHORIZED: Invalid or missing API key",
    )
    operator = IndeedQuotaUsageOperator(task_id="extract", month="122024")
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=r"HTTP 401 invalid_client")


@pytest.mark.parametrize("flaw", ["\n", "\r\n", " ", "\t"])
def test_a_credential_with_whitespace_is_refused_before_any_request_without_echoing_it(
    monkeypatch, sandbox_server, sandbox, clock, figures, flaw
):
    """A key pasted with a line break would make the HTTP client quote the whole header, key included."""
    key, secret = f"sk_live_{uuid.uuid4().hex}", f"secret-{uuid.uuid4().hex}"
    SUITE.extra_secrets.update({key, secret})
    sonarly_at(monkeypatch, sandbox_server.url, password=key + flaw)
    indeed_at(monkeypatch, sandbox_server.url, password=secret + flaw)
    refused = r"the (API key|client secret) \(password\) holds a"
    figures.task(lambda: gate(mode="poke").execute({}), expect=Exception, match=refused)
    figures.task(
        lambda: IndeedQuotaUsageOperator(task_id="extract", month="122024").execute({}),
        expect=Exception,
        match=refused,
    )
    trigger = reset_trigger()
    figures.event(first_event(trigger), status="error", match=refused)
    assert sum(sandbox.stats()["requests"].values()) == 0


def test_a_header_the_http_client_refuses_fails_once_without_echoing_it(indeed_conn, sandbox, recorded_sleeps, figures):
    """The API hands out an access token no header can carry: one clear error, no retry, no echo of the token."""
    token = f"tok_{uuid.uuid4().hex}"
    SUITE.extra_secrets.add(token)
    sandbox.add_fault("patch", endpoint="indeed_token", patch={"access_token": f"{token}\nX-Injected: 1"})
    figures.task(
        lambda: IndeedQuotaUsageOperator(task_id="extract", month="122024").execute({}),
        expect=AirflowFailException,
        match=r"access_token: .*not printable ASCII without spaces, so it cannot be sent in a header",
    )
    assert recorded_sleeps == []
    assert sandbox.stats()["requests"].get("indeed_quota_usage", 0) == 0


def test_a_refused_access_token_is_not_echoed(indeed_conn, sandbox, recorded_sleeps, figures):
    operator = IndeedQuotaUsageOperator(task_id="extract", month="122024")
    figures.task(lambda: operator.execute({}))
    sandbox.add_fault("status", status=401, endpoint="indeed_quota_usage", count=None)
    figures.task(
        lambda: IndeedQuotaUsageOperator(task_id="extract", month="012025").execute({}),
        expect=AirflowFailException,
        match=r"HTTP 401",
    )
    assert sandbox.stats()["tokens_issued"] == {"emp-acme": 2}  # the refused token, then its one renewal


def test_test_connection_messages_hold_no_secret(sonarly_conn, indeed_conn, sandbox, figures):
    from airflow_provider_quota.hooks.indeed import IndeedHook

    for hook in (SonarlyHook(), IndeedHook()):
        ok, message = hook.test_connection()
        assert ok, message
        figures.evidence("exception", message)
        figures.evidence("exception", repr(hook))


@pytest.mark.dag_test
def test_example_dag_under_faults_through_airflows_task_runner(
    airflow_db, indeed_conn, sandbox, monkeypatch, tmp_path, recorded_sleeps, figures
):
    """
    ``indeed_monthly_spend`` with dag.test(): a token endpoint hiccup and a 429 burst, the real task
    logs (captured), the XCom values and the rendered template fields as the metadata database keeps them.
    """
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from tests.conftest import REPO
    from tests.reliability.conftest import airflow_configured_log_level, warehouse_keys

    set_connection(monkeypatch, "warehouse", conn_type="sqlite", host=str(tmp_path / "warehouse.db"))
    dag = DagBag(dag_folder=str(REPO / "example_dags" / "indeed_monthly_spend.py")).dags["indeed_monthly_spend"]
    sandbox.add_fault("503", endpoint="indeed_token", count=1)
    sandbox.add_fault("429", endpoint="indeed_quota_usage", count=2, retry_after="1")
    sandbox.add_fault("500", endpoint="indeed_quota_usage", count=1)
    with airflow_configured_log_level():  # see its docstring: an upstream DEBUG line of dag.test() only
        dag_run = figures.task(lambda: dag.test(logical_date=datetime(2025, 2, 1, tzinfo=timezone.utc)))
    assert dag_run.state == "success"
    with create_session() as session:
        rendered = session.execute(
            select(RenderedTaskInstanceFields.rendered_fields).where(
                RenderedTaskInstanceFields.run_id == dag_run.run_id
            )
        ).all()
        xcoms = session.execute(select(XComModel.value).where(XComModel.run_id == dag_run.run_id)).all()
    figures.evidence("rendered", [row[0] for row in rendered])
    figures.evidence("xcom", [row[0] for row in xcoms])
    assert len(rendered) == 3 and len(xcoms) == 3
    employers = ["emp-acme", "emp-globex", "emp-eu-initech"]
    keys = [(employer, "012025") for employer in employers]
    assert figures.rows(keys, warehouse_keys("warehouse", "indeed_api_quota_usage")) == (0, 0)
    stats = sandbox.stats()
    assert stats["tokens_issued"] == dict.fromkeys(employers, 1)
    assert stats["requests"]["indeed_quota_usage"] == 3 + 3  # one answer per employer, three faults


def test_the_quotas_page_and_its_endpoints_hold_no_secret(
    airflow_db, monkeypatch, sandbox, sandbox_server, tmp_path, figures
):
    """
    The Quotas page and its JSON endpoints (through the whole Airflow API app) in every state: quota
    read, a 500 on a card, a wrong API key on a card, the Indeed section on a warehouse filled from the
    sandbox (an access token was issued), and a waiting gate whose trigger kwargs the page decrypts.
    """
    from tests.quotas_page import ENDPOINTS, QuotasPage, recent_months, run_gate_dag, waiting, write_spend

    wrong_key = "sk_test_wrong_key_for_the_quotas_page"
    SUITE.extra_secrets.add(wrong_key)
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")  # as the API server runs
    from tests.reliability.conftest import airflow_configured_log_level

    with airflow_configured_log_level():  # an upstream DEBUG line of dag.test() only, see its docstring
        runs = run_gate_dag(sandbox_server)  # resets the sandbox
    indeed_at(monkeypatch, sandbox_server.url)
    set_connection(monkeypatch, "quota_warehouse", conn_type="sqlite", host=str(tmp_path / "warehouse.db"))
    write_spend("quota_warehouse", "indeed_api_quota_usage", ["emp-acme"], recent_months(2))
    monkeypatch.setenv("AIRFLOW__QUOTA__SPEND_CONN_ID", "quota_warehouse")
    sonarly_at(monkeypatch, sandbox_server.url)
    set_connection(
        monkeypatch,
        "sonarly_wrong",
        conn_type="sonarly",
        host=sandbox_server.url,
        password=wrong_key,
        extra={"account_group_id": "ag_growth"},
    )
    sandbox.add_fault("500", endpoint="sonarly_quota", count=1)
    reset_at = datetime.now(timezone.utc) + timedelta(hours=1)
    page = QuotasPage()
    with waiting(runs, reset_at=reset_at, reschedule_at=reset_at, group="ag_growth", list_type="SALES_NAVIGATOR"):
        for path in ENDPOINTS:
            answer = page.get(path)
            assert answer.status_code == 200, answer.text
            figures.evidence("ui page", answer.text)
        text = page.html()  # the readings of the period: the 500 and the 401 on their cards
    assert "HTTP 500" in text and "HTTP 401" in text and "emp-acme" in text
    assert sandbox.stats()["tokens_issued"] == {"emp-acme": 1}


# --------------------------------------------------------------------------- the scan


@pytest.mark.scan_last
def test_the_scan_sees_every_channel(figures):
    """Plant a canary in each channel the scan reads: the scan below must find every one (so it can fail)."""
    canary = f"canary_{uuid.uuid4().hex}"
    SUITE.canaries.add(canary)
    logging.getLogger("tests.reliability.canary").debug("debug record %s", canary)
    SonarlyHook().log.info("structlog record %s", canary)
    print(f"stdout {canary}")
    print(f"stderr {canary}", file=sys.stderr)
    os.write(2, f"raw fd 2 {canary}\n".encode())
    figures.task(lambda: {"xcom": canary})

    def fail() -> None:
        raise QuotaApiError(canary)

    figures.task(fail, expect=QuotaApiError)
    figures.evidence("rendered", {"field": canary})
    figures.evidence("trigger kwargs", {"kwarg": canary})
    figures.evidence("ui page", f"<p>{canary}</p>")


@pytest.mark.scan_last
def test_nothing_the_suite_emitted_holds_a_secret(figures):
    scan = SUITE.scan()
    canaries = scan["canary_hits_by_channel"]
    for channel in ("log", "stdout", "stderr", "xcom", "exception", "rendered", "trigger kwargs", "ui page"):
        assert canaries.get(channel, 0) >= 1, f"the scan does not see the {channel!r} channel: {canaries}"
    assert scan["access_tokens_searched"] >= 1 or len(SUITE.tests) < 10, "no access token was issued to search for"
    assert scan["secrets_found"] == 0, scan


def test_connection_error_for_a_bad_host_names_it_without_its_credentials(monkeypatch, figures):
    sonarly_at(monkeypatch, "https://user:hunter2-password@api.sonarly.io")
    SUITE.extra_secrets.add("hunter2-password")
    figures.task(lambda: SonarlyHook().base_url, expect=ConnectionConfigError, match="must not contain credentials")


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("https://api.sonarly.io/v1?api_key={key}", "must not have a query or fragment"),
        ("https://api.sonarly.io/#{key}", "must not have a query or fragment"),
        ("ftp://api.sonarly.io/{key}", "must be an http"),
        ("http://api.sonarly.io/{key}", "plain http:// to a host that is not loopback"),
    ],
)
def test_connection_error_for_a_bad_host_never_quotes_its_path_or_query(monkeypatch, figures, host, problem):
    key = f"sk_live_{uuid.uuid4().hex}"
    SUITE.extra_secrets.add(key)
    sonarly_at(monkeypatch, host.format(key=key))
    error = figures.task(lambda: SonarlyHook().base_url, expect=ConnectionConfigError, match=problem)
    assert "api.sonarly.io" in str(error)
