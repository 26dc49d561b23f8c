"""The sandbox itself: counters, fault rules, quota windows, token lifetimes, loopback only."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
import requests

from airflow_provider_quota.sandbox import SandboxServer
from tests.conftest import SONARLY_KEY

AUTH = {"Authorization": f"Bearer {SONARLY_KEY}"}


def test_counts_requests_per_endpoint_including_faulted_ones(sandbox_server, sandbox):
    sandbox.add_fault("500", endpoint="sonarly_quota", count=1)
    for _ in range(2):
        requests.get(f"{sandbox_server.url}/v1/accounts/ag_sandbox/prospecting/quota", headers=AUTH, timeout=5)
    requests.get(f"{sandbox_server.url}/v1/accounts", headers=AUTH, timeout=5)
    stats = sandbox.stats()
    assert stats["requests"]["sonarly_quota"] == 2 and stats["requests"]["sonarly_accounts"] == 1
    assert stats["faults_injected"] == {"500": 1} and stats["pending_faults"] == 0


def test_fault_rules_are_validated(sandbox):
    with pytest.raises(requests.HTTPError):
        sandbox.add_fault("meteor")
    with pytest.raises(requests.HTTPError):
        sandbox.add_fault("500", endpoint="nowhere")


def test_probabilistic_faults_are_seeded(sandbox_server, sandbox):
    sandbox.add_fault("503", endpoint="sonarly_quota", count=None, probability=0.25)
    statuses = [
        requests.get(
            f"{sandbox_server.url}/v1/accounts/ag_sandbox/prospecting/quota", headers=AUTH, timeout=5
        ).status_code
        for _ in range(200)
    ]
    assert 20 < statuses.count(503) < 80
    sandbox.reset()
    sandbox.add_fault("503", endpoint="sonarly_quota", count=None, probability=0.25)
    again = [
        requests.get(
            f"{sandbox_server.url}/v1/accounts/ag_sandbox/prospecting/quota", headers=AUTH, timeout=5
        ).status_code
        for _ in range(200)
    ]
    assert again == statuses  # same seed, same answers


def test_quota_window_resets(sandbox_server, sandbox):
    import time_machine

    url = f"{sandbox_server.url}/v1/accounts/ag_sandbox/prospecting/quota"
    with time_machine.travel(datetime(2026, 11, 22, 12, tzinfo=timezone.utc), tick=True) as traveller:
        sandbox.set_quota("ag_sandbox", used=25, reset_in_seconds=3600)
        data = requests.get(url, headers=AUTH, timeout=5).json()["data"]
        assert data["exhausted"] is True and data["resetAt"].startswith("2026-11-22T13:00")
        traveller.shift(3599)
        assert requests.get(url, headers=AUTH, timeout=5).json()["data"]["exhausted"] is True
        traveller.shift(2)
        data = requests.get(url, headers=AUTH, timeout=5).json()["data"]
    assert data["exhausted"] is False and data["remaining"] == 25


def test_stall_fault_delays_the_answer(sandbox_server, sandbox):
    sandbox.add_fault("stall", seconds=2, endpoint="sonarly_accounts")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{sandbox_server.url}/v1/accounts", headers=AUTH, timeout=(2, 0.3))


def test_refuses_non_loopback_addresses():
    with pytest.raises(ValueError, match="loopback only"):
        SandboxServer(host="0.0.0.0")  # noqa: S104


def test_indeed_usage_is_settable_and_the_current_month_follows_the_clock(indeed_conn, sandbox):
    import time_machine
    from requests import HTTPError

    from airflow_provider_quota.hooks.indeed import IndeedHook

    with time_machine.travel(datetime(2026, 5, 31, 23, 59, tzinfo=timezone.utc), tick=False) as traveller:
        sandbox.set_usage("emp-acme", spend="12.345", requests_count=7, api_quota=10)
        usage = IndeedHook().get_api_quota_usage(None)
        assert (usage.month, usage.spend_amount, usage.requests_count, usage.api_quota) == (
            "052026",
            Decimal("12.345"),
            7,
            10,
        )
        traveller.move_to(datetime(2026, 6, 1, tzinfo=timezone.utc))  # the month rolls over: May's settings stay in May
        usage = IndeedHook().get_api_quota_usage(None)
        assert usage.month == "062026" and usage.api_quota != 10
        assert IndeedHook().get_api_quota_usage("052026").requests_count == 7
    with pytest.raises(HTTPError, match="400"):
        sandbox.set_usage("emp-acme", month="13-2026")
