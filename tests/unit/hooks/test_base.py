"""The shared HTTP base: URLs, ids, Retry-After, body decoding, settings."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from airflow_provider_quota.exceptions import ConnectionConfigError, InvalidParameterError, QuotaApiError
from airflow_provider_quota.hooks.base import (
    build_base_url,
    decode_json_body,
    parse_retry_after,
    quote_path_segment,
)
from airflow_provider_quota.hooks.sonarly import SonarlyHook


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "https://default.example"),
        ("", None, "https://default.example"),
        ("api.sonarly.io", None, "https://api.sonarly.io"),
        ("https://api.sonarly.io/", None, "https://api.sonarly.io"),
        ("https://proxy.corp/sonarly/", None, "https://proxy.corp/sonarly"),
        ("http://127.0.0.1:8765", None, "http://127.0.0.1:8765"),
        ("http://localhost", 8765, "http://localhost:8765"),
        ("http://[::1]:9000", None, "http://[::1]:9000"),
        ("HTTPS://API.SONARLY.IO", None, "https://API.SONARLY.IO"),
    ],
)
def test_base_url_forms(host, port, expected):
    assert (
        build_base_url(host, port, default="https://default.example", allow_insecure_http=False, conn_id="c")
        == expected
    )


def test_plain_http_to_a_remote_host_is_refused_unless_allowed():
    with pytest.raises(ConnectionConfigError, match=r"plain http:// .*allow_insecure_http"):
        build_base_url("http://api.sonarly.io", None, default="", allow_insecure_http=False, conn_id="c")
    url = build_base_url("http://api.sonarly.io", None, default="", allow_insecure_http=True, conn_id="c")
    assert url == "http://api.sonarly.io"


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("ftp://api.sonarly.io", "must be an http"),
        ("https://api.sonarly.io?x=1", "query or fragment"),
        ("https://api.sonarly.io:99999", "not a valid URL"),
    ],
)
def test_bad_hosts_are_refused(host, problem):
    with pytest.raises(ConnectionConfigError, match=problem):
        build_base_url(host, None, default="", allow_insecure_http=False, conn_id="c")


def test_host_with_credentials_is_refused_without_echoing_them():
    with pytest.raises(ConnectionConfigError) as caught:
        build_base_url("https://user:s3cr3t@api.sonarly.io", None, default="", allow_insecure_http=False, conn_id="c")
    assert "s3cr3t" not in str(caught.value) and "must not contain credentials" in str(caught.value)


def test_insecure_flag_from_connection_extra(monkeypatch):
    from tests.conftest import set_connection

    set_connection(monkeypatch, "remote", conn_type="sonarly", host="http://sonarly.internal", password="k")
    with pytest.raises(ConnectionConfigError, match="allow_insecure_http"):
        _ = SonarlyHook("remote").base_url
    set_connection(
        monkeypatch,
        "remote2",
        conn_type="sonarly",
        host="http://sonarly.internal",
        password="k",
        extra={"allow_insecure_http": "true"},
    )
    assert SonarlyHook("remote2").base_url == "http://sonarly.internal"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [("ag_1", "ag_1"), ("a/b", "a%2Fb"), ("x?y#z", "x%3Fy%23z"), ("a b", "a%20b"), ("é", "%C3%A9"), ("%2F", "%252F")],
)
def test_path_segments_are_encoded(value, encoded):
    assert quote_path_segment(value, name="id") == encoded


@pytest.mark.parametrize("value", ["", ".", "..", " x", "x\n", "a\x00b", None, 5])
def test_impossible_ids_are_refused(value):
    with pytest.raises(InvalidParameterError, match="account_group_id"):
        quote_path_segment(value, name="account_group_id")


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("3", 3.0), (" 1.5 ", 1.5), ("-4", 0.0), ("soon", None), ("nan", None)],
)
def test_retry_after_seconds(header, expected):
    assert parse_retry_after(header) == expected


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0


def test_json_decoding_keeps_decimals_and_names_problems():
    payload, problem = decode_json_body(b'{"amount": 0.1000000000000000055511151231257827}', "application/json")
    assert problem is None and payload == {"amount": Decimal("0.1000000000000000055511151231257827")}
    assert decode_json_body(b"", None)[1] == "an empty body"
    assert "HTML page" in decode_json_body(b"<html></html>", "text/html; charset=utf-8")[1]
    assert "malformed JSON" in decode_json_body(b'{"a": ', "application/json")[1]
    assert "malformed JSON" in decode_json_body(b'{"a": NaN}', "application/json")[1]
    assert "not an object" in decode_json_body(b"[1, 2]", "application/json")[1]


@pytest.mark.parametrize(
    "kwargs",
    [{"connect_timeout": 0}, {"read_timeout": -1}, {"max_attempts": 0}, {"backoff_initial": 0}, {"max_retry_wait": -1}],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(InvalidParameterError, match=next(iter(kwargs))):
        SonarlyHook(**kwargs)


def test_api_error_survives_pickling():
    error = QuotaApiError("boom", api="Sonarly", status=503, code="X", trace_id="t", retryable=True, retry_after=2)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.code, copy.trace_id, copy.retryable, copy.retry_after, str(copy)) == (
        503,
        "X",
        "t",
        True,
        2,
        str(error),
    )


def test_repr_shows_the_connection_id_only():
    assert repr(SonarlyHook("my_conn")) == "SonarlyHook(sonarly_conn_id='my_conn')"


def test_per_loop_registries_let_go_of_closed_loops(sonarly_conn, sandbox):
    """Every asyncio.run is a new loop; what the hooks keep per loop must not keep the closed ones alive."""
    import asyncio

    from airflow_provider_quota.hooks import base

    for _ in range(4):
        asyncio.run(SonarlyHook().aget_prospecting_quota())
    # Only the last closed loop may remain, until the next borrow drops it; loops other tests keep
    # running (the sync hooks' I/O thread) stay, as they should.
    for registry in (base._ConnectionClient._registry, base._LOOKUP_SLOTS):
        assert sum(loop.is_closed() for loop in registry) <= 1
