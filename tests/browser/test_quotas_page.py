"""
The Quotas page in headless Chromium against a real API server, scheduler, dag processor and triggerer.

Real data throughout: the gates are the task instances of two DAG runs that the scheduler started
and that really wait on the sandbox's exhausted quota (one deferred in the triggerer, one up for
reschedule), the quotas come from the sandbox through the page's cache, and the Indeed section
reads a SQLite warehouse that IndeedQuotaUsageOperator filled from the sandbox. Three states are
screenshotted (``QUOTA_UI_CHECK_UPDATE_DOCS=1`` copies them to docs/img/): quota exhausted with the
gates waiting and a live countdown, quota fresh (the runs marked successful, the quota reset), and
the API failing.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests

from airflow_provider_quota.sandbox import SandboxClient
from tests.browser.conftest import UI_TIMEOUT_MS, AirflowUi, save_screenshot
from tests.conftest import INDEED_SECRET, SONARLY_KEY
from tests.quotas_page import recent_months, write_spend

GATES = {"prospecting_quota_gate": "wait_for_prospecting_quota", "prospecting_growth_team": "wait_for_growth_quota"}
EMPLOYERS = ["emp-acme", "emp-globex", "emp-eu-initech"]
RESET_IN_SECONDS = 3 * 3600


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _api(ui: AirflowUi, method: str, path: str, **kwargs: Any) -> Any:
    answer = requests.request(method, f"{ui.url}/api/v2{path}", timeout=60, **kwargs)
    answer.raise_for_status()
    return answer.json()


def _wait_for(what: str, check: Any, timeout: float = UI_TIMEOUT_MS / 1000 * 3) -> Any:
    """Poll ``check`` until it returns something true (readiness polling, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def start_gates(ui: AirflowUi) -> dict[str, str]:
    """Trigger both gate DAGs and wait until their gates wait: dag id -> run id."""
    runs = {}
    for dag_id in GATES:
        _wait_for(
            f"the dag processor to parse {dag_id}",
            lambda d=dag_id: requests.get(f"{ui.url}/api/v2/dags/{d}", timeout=60).ok,
        )
        runs[dag_id] = _api(ui, "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})["dag_run_id"]
    expected = {"prospecting_quota_gate": "deferred", "prospecting_growth_team": "up_for_reschedule"}
    for dag_id, run_id in runs.items():

        def state(dag_id: str = dag_id, run_id: str = run_id) -> bool:
            ti = _api(ui, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{GATES[dag_id]}")
            assert ti["state"] not in ("failed", "upstream_failed", "success"), ti
            return bool(ti["state"] == expected[dag_id])

        _wait_for(f"{dag_id}'s gate to be {expected[dag_id]}", state)
    return runs


def forget_stored_sonarly_connections(ui: AirflowUi) -> None:
    """Delete the Sonarly connections the connection-form tests saved: the page would list them too."""
    listed = _api(ui, "GET", "/connections", params={"limit": 100})["connections"]
    for connection in listed:
        if connection["conn_type"] == "sonarly":
            ui.forget_connection(connection["connection_id"])


def reload_until(page: Any, selector: str, count: int = 1) -> Any:
    """Reload the page until ``selector`` matches ``count`` elements (the page reads anew at most every second)."""

    def shown() -> bool:
        page.reload()
        return bool(page.locator(selector).count() == count)

    _wait_for(f"{count} x {selector}", shown)
    return page.locator(selector)


def test_quotas_page_in_three_states(page: Any, airflow_workers: AirflowUi, sandbox: SandboxClient, monkeypatch):
    expect, ui = _expect(), airflow_workers
    forget_stored_sonarly_connections(ui)  # only sonarly_default (AIRFLOW_CONN_SONARLY_DEFAULT) stays
    for name in ("AIRFLOW_CONN_INDEED_DEFAULT", "AIRFLOW_CONN_QUOTA_WAREHOUSE"):
        monkeypatch.setenv(name, ui.env[name])
    write_spend("quota_warehouse", "indeed_api_quota_usage", EMPLOYERS, [*recent_months(11), "current"])
    sandbox.set_quota("ag_sandbox", used=25, limit=25, reset_in_seconds=RESET_IN_SECONDS)
    sandbox.set_quota("ag_growth", used=47, limit=50, reset_in_seconds=RESET_IN_SECONDS)  # 3 left, the gate needs 5
    runs = start_gates(ui)

    # The navigation: Browse > Quotas opens the page inside the Airflow UI.
    page.goto(ui.url)
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Quotas").click()
    expect(page).to_have_url(re.compile(r"/plugin/quotas$"))
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", name="Quotas", exact=True)).to_be_visible()
    expect(frame.locator("article.card")).to_have_count(2)
    save_screenshot(page, "quotas-in-airflow-ui", docs=True)

    # 1. Exhausted, two gates waiting, live countdowns.
    page.goto(f"{ui.url}/quotas/")
    exhausted = page.locator("article.card.exhausted", has_text="ag_sandbox")
    expect(exhausted).to_contain_text("0 of 25 left")
    expect(page.locator("article.card.available", has_text="ag_growth")).to_contain_text("3 of 50 left")
    rows = page.locator("#gates tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="prospecting_quota_gate")).to_contain_text("deferred")
    expect(rows.filter(has_text="prospecting_growth_team")).to_contain_text("up_for_reschedule")
    countdown = exhausted.locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^[0-9]+h [0-5][0-9]m [0-5][0-9]s$"))
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first)  # it ticks
    expect(page.locator("#spend figure")).to_have_count(3)  # USD, EUR, API usage
    expect(page.locator("#spend tbody tr")).to_have_count(len(EMPLOYERS) * 12)
    for text in (page.content(), requests.get(f"{ui.url}/quotas/api/quotas", timeout=60).text):
        assert SONARLY_KEY not in text and INDEED_SECRET not in text
    save_screenshot(page, "quotas-exhausted", docs=True, full_page=True)

    # A gate's link opens its task instance in the Airflow UI.
    rows.filter(has_text="prospecting_quota_gate").get_by_role("link").click()
    run_in_url = re.escape(runs["prospecting_quota_gate"]).replace(":", "(:|%3A)").replace(r"\+", r"(\+|%2B)")
    expect(page).to_have_url(
        re.compile(rf"/dags/prospecting_quota_gate/runs/{run_in_url}/tasks/wait_for_prospecting_quota$")
    )

    # 2. Fresh: the quota reset, the runs marked successful (nothing waits any more).
    sandbox.set_quota("ag_sandbox", used=0, limit=25, reset_in_seconds=RESET_IN_SECONDS)
    for dag_id, run_id in runs.items():
        _api(ui, "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "success"})
    page.goto(f"{ui.url}/quotas/")
    reload_until(page, "#gates tbody tr", count=0)
    fresh = reload_until(page, "article.card.available")
    expect(fresh).to_contain_text("25 of 25 left")
    expect(page.locator("#gates")).to_contain_text("No SonarlyQuotaSensor is waiting")
    save_screenshot(page, "quotas-fresh", docs=True)

    # 3. The API fails: the card says so, the rest of the page stands.
    sandbox.add_fault("500", endpoint="sonarly_quota", count=None)
    failed = reload_until(page, "article.card.failed")
    expect(failed).to_contain_text("HTTP 500")
    expect(page.locator("#spend figure")).to_have_count(3)
    save_screenshot(page, "quotas-api-failing", docs=True)
