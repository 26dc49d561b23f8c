"""
The Quotas page and its JSON endpoints, through the whole Airflow API app (FastAPI's TestClient).

Real pieces throughout: Airflow's auth manager (SimpleAuthManager, JWTs it signs), the metadata
database (connections, task instances, encrypted trigger kwargs), the sandbox over HTTP for the
quotas, and a SQLite warehouse written by IndeedQuotaUsageOperator for the spend.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from markupsafe import escape

from airflow_provider_quota.plugins.quotas import QuotasPlugin, _nice_top, task_instance_url, utc_text
from airflow_provider_quota.plugins.quotas_data import Gate, quota_keys
from tests.conftest import INDEED_SECRET, SONARLY_KEY, indeed_at, set_connection, sonarly_at
from tests.quotas_page import (
    ENDPOINTS,
    GATE_DAG_ID,
    GATE_TASK_ID,
    HOSTILE_GROUP,
    HOSTILE_LIST_TYPE,
    PAGE,
    QuotasPage,
    recent_months,
    run_gate_dag,
    token,
    waiting,
    write_spend,
)

RESET_AT = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=2)
RESCHEDULE_AT = RESET_AT + timedelta(minutes=5)


@pytest.fixture
def page(airflow_db, monkeypatch):
    """The page, rebuilt for this test, with no connection and no warehouse configured."""
    import os

    for name in [name for name in os.environ if name.startswith(("AIRFLOW_CONN_", "AIRFLOW__QUOTA__"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")  # as airflow.api_fastapi.main sets it
    return QuotasPage()


@pytest.fixture(scope="module")
def gate_run(airflow_db, sandbox_server):
    return run_gate_dag(sandbox_server)


@pytest.fixture
def spend_table(monkeypatch, sandbox_server, sqlite_conn):
    """Three employers (two in USD, one in EUR) for three recent months, and one month too old to show."""
    indeed_at(monkeypatch, sandbox_server.url)
    months = recent_months(3)
    write_spend(sqlite_conn, "indeed_api_quota_usage", ["emp-acme", "emp-globex", "emp-eu-initech"], months)
    write_spend(sqlite_conn, "indeed_api_quota_usage", ["emp-precise-1"], [months[-1], recent_months(14)[0]])
    monkeypatch.setenv("AIRFLOW__QUOTA__SPEND_CONN_ID", sqlite_conn)
    monkeypatch.setenv("AIRFLOW__QUOTA__SPEND_TABLE", "indeed_api_quota_usage")
    return months


# ----------------------------------------------------------------------------- registration and auth


def test_the_plugin_is_registered_and_its_view_is_in_the_navigation(page):
    answer = page.get("/api/v2/plugins")
    assert answer.status_code == 200
    [plugin] = [p for p in answer.json()["plugins"] if p["name"] == "quotas"]
    assert plugin["source"].startswith("airflow-provider-quota==")
    [view] = plugin["external_views"]
    assert (view["name"], view["href"], view["destination"], view["url_route"]) == (
        "Quotas",
        "/quotas/",
        "nav",
        "quotas",
    )
    assert plugin["fastapi_apps"] == [
        {"app": "airflow_provider_quota.plugins.quotas._AppOnFirstRequest", "url_prefix": "/quotas", "name": "Quotas"}
    ]
    assert QuotasPlugin.name == "quotas"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_anonymous_request_is_refused(page, path):
    answer = page.get(path, role=None)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "Not authenticated"}


@pytest.mark.parametrize("path", ENDPOINTS)
def test_forged_token_is_refused(page, path):
    answer = page.client.get(path, headers={"Authorization": "Bearer not.a.jwt"})
    assert answer.status_code == 403


@pytest.mark.parametrize("path", ENDPOINTS)
def test_user_who_may_not_read_connections_is_refused(page, path):
    # SimpleAuthManager's viewers may read DAG runs but not connections.
    assert page.get(path, role="VIEWER").status_code == 403
    assert page.get(path, role="OP").status_code == 200


def test_the_session_cookie_of_the_ui_is_enough(page):
    from tests.quotas_page import token

    answer = page.client.get("/quotas/", headers={"Cookie": f"_token={token('ADMIN')}"})
    assert answer.status_code == 200 and "<h1>Quotas</h1>" in answer.text


# ----------------------------------------------------------------------------- the quota cards


def test_card_shows_used_limit_remaining_and_reset_countdown(page, sonarly_conn, sandbox):
    window = sandbox.set_quota("ag_sandbox", used=25, limit=25, reset_in_seconds=3600)
    text = page.html()
    card = re.search(r'<article class="card exhausted">.*?</article>', text, re.DOTALL)
    assert card, text
    assert "<h3>ag_sandbox</h3>" in card[0] and "sonarly_default · list type LINKEDIN_CLASSIC" in card[0]
    assert "0 <span>of 25 left</span>" in card[0] and "25 used / 25 limit / 0 remaining" in card[0]
    assert '<p class="badge">Exhausted</p>' in card[0]
    [until] = re.findall(r'class="countdown" data-until="([^"]+)"', card[0])
    assert until == utc_text(datetime.fromtimestamp(float(window["reset_at"]), tz=timezone.utc))
    [reading] = page.get("/quotas/api/quotas").json()
    assert reading["quota"]["exhausted"] is True and reading["quota"]["remaining"] == 0
    assert (reading["sonarly_conn_id"], reading["account_group_id"], reading["list_type"]) == (
        "sonarly_default",
        "ag_sandbox",
        None,
    )


def test_connections_of_the_metadata_database_are_listed_too(page, sonarly_conn, sandbox, sandbox_server):
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    stored = [
        Connection(conn_id="sonarly_growth", conn_type="sonarly", host=sandbox_server.url, password=SONARLY_KEY),
        Connection(conn_id="not_sonarly", conn_type="http", host=sandbox_server.url),
    ]
    stored[0].set_extra(json.dumps({"account_group_id": "ag_growth"}))
    with create_session() as session:
        session.add_all(stored)
    try:
        readings = page.get("/quotas/api/quotas").json()
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id.in_(["sonarly_growth", "not_sonarly"])).delete()
    assert [(r["sonarly_conn_id"], r["account_group_id"], r["error"]) for r in readings] == [
        ("sonarly_default", "ag_sandbox", None),
        ("sonarly_growth", "ag_growth", None),
    ]


def test_many_page_views_cost_one_request_per_key_per_period(page, sonarly_conn, sandbox, monkeypatch):
    clock = [1000.0]
    page.get()  # builds the app and its cache, reads ag_sandbox once
    page.cache.clock = lambda: clock[0]
    page.cache._entries.clear()  # start the period on the fake clock
    for _ in range(5):
        assert page.get().status_code == 200
        assert page.get("/quotas/api/quotas").status_code == 200
    assert sandbox.requests_to("sonarly_quota") == 2  # the first view, then one for the new period
    clock[0] += 59.9
    page.get()
    assert sandbox.requests_to("sonarly_quota") == 2
    clock[0] += 0.2  # past the default 60 s
    page.get()
    page.get()
    assert sandbox.requests_to("sonarly_quota") == 3


def test_concurrent_views_share_the_one_request_under_way(page, sonarly_conn, sandbox):
    sandbox.add_fault("stall", endpoint="sonarly_quota", seconds=1.0, count=1)  # the first reader is slow
    answers = []

    headers = {"Authorization": f"Bearer {token('ADMIN')}"}  # made once: JWT generation is not thread-safe

    def view():
        answers.append(page.client.get(PAGE, headers=headers).status_code)

    views = [threading.Thread(target=view) for _ in range(8)]
    for thread in views:
        thread.start()
    for thread in views:
        thread.join()
    assert answers == [200] * 8
    assert sandbox.requests_to("sonarly_quota") == 1


def test_the_period_is_configurable(page, sonarly_conn, sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW__QUOTA__UI_CACHE_SECONDS", "0")
    page.get()
    page.get()
    assert sandbox.requests_to("sonarly_quota") == 2
    assert page.cache.ttl_seconds == 0


def test_a_failing_api_shows_on_its_card_and_is_not_asked_again_within_the_period(page, sonarly_conn, sandbox):
    sandbox.add_fault("500", endpoint="sonarly_quota")
    for _ in range(3):
        text = page.html()
    card = re.search(r'<article class="card failed">.*?</article>', text, re.DOTALL)
    assert card, text
    assert "API error" in card[0] and "HTTP 500" in card[0]
    assert sandbox.requests_to("sonarly_quota") == 1  # one attempt, then the error is reused
    assert "<h2>Gates waiting</h2>" in text and "Indeed Sponsored Jobs" in text  # the rest of the page is there


def test_a_dripping_api_fails_its_card_at_the_page_deadline(page, monkeypatch):
    """Headers, then a byte every half second: the card fails at the page's 10 s deadline, not the hook's 60 s."""
    from tests.reliability.servers import HostileServer

    with HostileServer() as server:
        sonarly_at(monkeypatch, server.url, account_group_id="drip")
        [reading] = page.get("/quotas/api/quotas").json()
    assert "no complete answer within deadline=10 s" in reading["error"]


def test_a_connection_without_default_group_gets_a_card_that_says_so(page, monkeypatch, sandbox, sandbox_server):
    set_connection(monkeypatch, "sonarly_default", conn_type="sonarly", host=sandbox_server.url, password=SONARLY_KEY)
    [reading] = page.get("/quotas/api/quotas").json()
    assert reading["quota"] is None and "No account group" in reading["error"]
    assert sandbox.requests_to("sonarly_quota") == 0


def test_empty_state_without_connections_gates_or_table(page):
    text = page.html()
    assert "No Sonarly connection" in text
    assert "No SonarlyQuotaSensor is waiting" in text
    assert "No warehouse table configured" in text
    assert page.get("/quotas/api/quotas").json() == []
    assert page.get("/quotas/api/gates").json() == []
    assert page.get("/quotas/api/spend").json() == {
        "conn_id": "",
        "table": "indeed_api_quota_usage",
        "rows": [],
        "error": None,
    }


# ----------------------------------------------------------------------------- the waiting gates


def test_waiting_gates_with_their_parameters_next_check_and_link(page, sonarly_conn, sandbox, gate_run):
    sandbox.set_quota("ag_sandbox", used=25, limit=25, reset_in_seconds=3600)
    with waiting(
        gate_run, reset_at=RESET_AT, reschedule_at=RESCHEDULE_AT, group="ag_growth", list_type="SALES_NAVIGATOR"
    ):
        gates = page.get("/quotas/api/gates").json()
        readings = page.get("/quotas/api/quotas").json()
        text = page.html()
    deferred, rescheduled = gates
    assert deferred == {
        "dag_id": GATE_DAG_ID,
        "run_id": gate_run[0],
        "task_id": GATE_TASK_ID,
        "map_index": -1,
        "state": "deferred",
        "sonarly_conn_id": "sonarly_default",
        "account_group_id": "ag_growth",  # from the trigger's (encrypted) kwargs
        "list_type": "SALES_NAVIGATOR",
        "min_remaining": 7,
        "next_check": RESET_AT.isoformat(),
        "url": task_instance_url(GATE_DAG_ID, gate_run[0], GATE_TASK_ID, -1),
    }
    assert (rescheduled["run_id"], rescheduled["state"]) == (gate_run[1], "up_for_reschedule")
    assert rescheduled["account_group_id"] == "ag_sandbox"  # none in its rendered fields: the connection's
    assert (rescheduled["list_type"], rescheduled["min_remaining"]) == ("LINKEDIN_CLASSIC", 10)  # the example DAG's
    assert rescheduled["next_check"] == RESCHEDULE_AT.isoformat()
    # one card per quota in use; the connection's default group is covered by the rescheduled gate
    assert [(r["account_group_id"], r["list_type"]) for r in readings] == [
        ("ag_growth", "SALES_NAVIGATOR"),
        ("ag_sandbox", "LINKEDIN_CLASSIC"),
    ]
    run_in_url = gate_run[0].replace(":", "%3A").replace("+", "%2B")
    assert f'href="/dags/{GATE_DAG_ID}/runs/{run_in_url}/tasks/{GATE_TASK_ID}" target="_top"' in text
    assert f'data-until="{utc_text(RESET_AT)}"' in text and f'data-until="{utc_text(RESCHEDULE_AT)}"' in text


def test_gates_of_dags_the_user_may_not_read_are_hidden(page, sonarly_conn, sandbox, gate_run, monkeypatch):
    from airflow.api_fastapi.app import get_auth_manager

    manager = type(get_auth_manager())
    monkeypatch.setattr(manager, "get_authorized_dag_ids", lambda self, **kwargs: {"some_other_dag"})
    with waiting(
        gate_run, reset_at=RESET_AT, reschedule_at=RESCHEDULE_AT, group="ag_growth", list_type="SALES_NAVIGATOR"
    ):
        assert page.get("/quotas/api/gates").json() == []
        assert GATE_TASK_ID not in page.html()


def test_hostile_group_and_list_type_are_escaped(page, monkeypatch, sandbox, sandbox_server, gate_run):
    sonarly_at(monkeypatch, sandbox_server.url, account_group_id=HOSTILE_GROUP)
    sandbox.set_quota(HOSTILE_GROUP, used=1, limit=25)  # the sandbox answers for it, echoing it in errors
    with waiting(
        gate_run, reset_at=RESET_AT, reschedule_at=RESCHEDULE_AT, group=HOSTILE_GROUP, list_type=HOSTILE_LIST_TYPE
    ):
        text = page.html()
    for hostile in (HOSTILE_GROUP, HOSTILE_LIST_TYPE):
        assert hostile not in text
        assert str(escape(hostile)) in text  # shown, as text
    assert "<script>alert" not in text and "<img" not in text
    assert text.count("<script") == 1  # the page's own quotas.js


# ----------------------------------------------------------------------------- Indeed spend


def test_spend_charts_per_currency_and_the_exact_table(page, spend_table):
    text = page.html()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", text)
    assert captions == [
        "Monthly spend per employer (EUR)",
        "Monthly spend per employer (USD)",
        "API requests used, % of apiQuota",
    ]
    assert text.count("<svg") == 3 and text.count('<line class="quota"') == 1
    spend = page.get("/quotas/api/spend").json()
    assert spend["error"] is None
    shown = {(row["employer_id"], row["month"]) for row in spend["rows"]}
    assert len(shown) == 10 and all(month in spend_table for _, month in shown)  # the old month is not shown
    from airflow_provider_quota.utils.warehouse import get_db_hook

    stored = {
        (employer, month_start[:7]): Decimal(amount)
        for employer, month_start, amount in get_db_hook(spend["conn_id"]).get_records(
            "SELECT employer_id, month_start, spend_amount FROM indeed_api_quota_usage"
        )
    }
    for row in spend["rows"]:
        assert isinstance(row["spend_amount"], str)  # never a float
        assert Decimal(row["spend_amount"]) == stored[(row["employer_id"], row["month"])]
        assert f"<td>{row['spend_amount']}</td>" in text
    [precise] = [row for row in spend["rows"] if row["employer_id"] == "emp-precise-1"]
    exact = str(Decimal("1234.567890123456789012345") + int(precise["month"][5:]))  # 25 digits, beyond a float
    assert precise["spend_amount"] == exact and f"<td>{exact}</td>" in text


def test_a_missing_spend_table_shows_its_error(page, sqlite_conn, monkeypatch):
    monkeypatch.setenv("AIRFLOW__QUOTA__SPEND_CONN_ID", sqlite_conn)
    monkeypatch.setenv("AIRFLOW__QUOTA__SPEND_TABLE", "no_such_table")
    text = page.html()
    assert re.search(r'<p class="error">no_such_table on warehouse_sqlite: OperationalError: no such table', text)
    assert page.get("/quotas/api/spend").json()["error"].startswith("OperationalError: no such table")


def test_spend_of_a_connection_the_user_may_not_read_is_not_shown(page, spend_table, sqlite_conn, monkeypatch):
    """Under an auth manager with per-connection rights, reading some connections is not reading the warehouse's."""
    from airflow.api_fastapi.app import get_auth_manager

    manager = type(get_auth_manager())
    allowed = manager.is_authorized_connection

    def all_but_the_warehouse(self, *, method, user, details=None):
        return (details is None or details.conn_id != sqlite_conn) and allowed(
            self, method=method, user=user, details=details
        )

    monkeypatch.setattr(manager, "is_authorized_connection", all_but_the_warehouse)
    spend = page.get("/quotas/api/spend").json()
    assert spend["rows"] == [] and "You may not read the connection" in spend["error"]
    assert "emp-acme" not in page.html()


def test_a_warehouse_error_that_quotes_the_password_is_masked(monkeypatch):
    from airflow_provider_quota.plugins.quotas_data import connection_secrets, error_text

    password = "pa ss/w0rd"
    set_connection(monkeypatch, "warehouse_pw", conn_type="postgres", host="127.0.0.1", password=password)
    error = RuntimeError("could not connect to postgresql://user:pa%20ss%2Fw0rd@127.0.0.1/db or with 'pa ss/w0rd'")
    text = error_text(error, connection_secrets("warehouse_pw"))
    assert "w0rd" not in text and text.count("***") == 2


def test_an_empty_spend_table_says_so(page, sqlite_conn, monkeypatch, sandbox, sandbox_server):
    indeed_at(monkeypatch, sandbox_server.url)
    write_spend(sqlite_conn, "indeed_api_quota_usage", ["emp-acme"], [recent_months(14)[0]])  # too old to show
    monkeypatch.setenv("AIRFLOW__QUOTA__SPEND_CONN_ID", sqlite_conn)
    assert "has no rows for the last twelve months" in page.html()


# ----------------------------------------------------------------------------- no secrets


def test_no_secret_on_the_page_or_its_endpoints(page, monkeypatch, sandbox, sandbox_server, spend_table, gate_run):
    sonarly_at(monkeypatch, sandbox_server.url)
    sandbox.add_fault("500", endpoint="sonarly_quota", count=1)
    with waiting(
        gate_run, reset_at=RESET_AT, reschedule_at=RESCHEDULE_AT, group="ag_growth", list_type="SALES_NAVIGATOR"
    ):
        texts = [page.get(path).text for path in ENDPOINTS]
    assert "HTTP 500" in texts[0] and "ag_growth" in texts[0] and "emp-acme" in texts[0]
    for text in texts:
        assert SONARLY_KEY not in text and INDEED_SECRET not in text
        assert "sbx_at_" not in text  # no Indeed access token


# ----------------------------------------------------------------------------- helpers


def test_quota_keys_cover_each_gate_and_each_default_group_once():
    def gate(conn_id: str, group: str | None, list_type: str | None) -> Gate:
        return Gate("d", "r", "t", -1, "deferred", conn_id, group, list_type, 1, None)

    connections = {"a": "g1", "b": "g2", "c": None}
    gates = [gate("a", "g1", "LT"), gate("a", "g9", None), gate("a", "g9", None), gate("zz", "g1", None)]
    assert quota_keys(connections, gates) == [
        ("a", "g1", "LT"),
        ("a", "g9", None),
        ("b", "g2", None),
        ("c", None, None),
    ]


@pytest.mark.parametrize(("value", "top"), [(0, 1), (0.4, 1), (1, 1), (3, 5), (100, 100), (101, 200), (4321.5, 5000)])
def test_axis_top(value, top):
    assert _nice_top(value) == top


def test_task_instance_links_follow_the_base_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/team-a/")
    assert task_instance_url("d/1", "manual__2026-01-01T00:00:00+00:00", "t", 3) == (
        "/team-a/dags/d%2F1/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/t/mapped/3"
    )
    assert utc_text(datetime(2026, 1, 1, 1, 0, 0, 123, tzinfo=timezone(timedelta(hours=1)))) == "2026-01-01T00:00:00Z"
