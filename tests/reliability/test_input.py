"""
Bad input from DAG authors: refused before any request with an error naming it, or encoded so it
can never change a request's path or query, or a statement's meaning.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import time_machine
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_quota.exceptions import InvalidParameterError
from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor
from airflow_provider_quota.utils.warehouse import get_db_hook
from tests.conftest import INDEED_CLIENT_ID, INDEED_SECRET, SONARLY_KEY, WAREHOUSES, set_connection, warehouse_conn_id
from tests.reliability.conftest import START

#: Ids that must travel as data, never as syntax.
ODD_IDS = [
    "../admin",
    "../../v1/accounts",
    "a/b",
    "x?listType=ALL",
    "x#fragment",
    "x&monthYear=012025",
    "with space",
    "déjà-vu ☃",
    "%2e%2e%2f",
    "x;y=z",
]
#: Ids that can never be valid: refused before any request.
IMPOSSIBLE_IDS = ["", ".", "..", " padded", "trailing ", "tab\there", "new\nline", "nul\x00", "x" * 300]


def render(task: Any, **params: Any) -> dict[str, Any]:
    """Render the task's template fields as a task run would, and keep them for the secrets scan."""
    task.render_template_fields({"params": params, "ds": "2026-11-16"})
    return {name: getattr(task, name) for name in task.template_fields}


def no_requests(sandbox: Any) -> None:
    assert sandbox.stats()["total_requests"] == 0


# --------------------------------------------------------------------------- months


@pytest.mark.parametrize(
    ("month", "problem"),
    [
        ("132025", r"'132025' is not a real month"),
        ("112024", r"112024 is before 122024"),
        ("122026", r"122026 is in the future \(the current month is 112026\)"),
        ("2027-01", r"012027 is in the future"),
        ("2025-13", r"'2025-13' is not a real month"),
        ("", r"month is an empty string"),
        ("   ", r"month is an empty string"),
        ("12/2024", r"'12/2024' is malformed"),
        ("122024; DROP TABLE x", r"is malformed"),
        (122024, r"not int 122024"),
        (["122024", None], r"not NoneType None"),
        (["122024", "132025"], r"'132025' is not a real month"),
        ([], r"empty list"),
    ],
)
def test_invalid_months_fail_without_retry_and_without_a_request(indeed_conn, sandbox, figures, month, problem):
    operator = IndeedQuotaUsageOperator(task_id="extract", month=month)
    with time_machine.travel(START):  # the current month is 11/2026
        figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=problem)
    no_requests(sandbox)


def test_templated_month_is_validated_after_rendering(indeed_conn, sandbox, figures):
    operator = IndeedQuotaUsageOperator(task_id="extract", month="{{ params.month }}")
    figures.evidence("rendered", render(operator, month="13-2025"))
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=r"'13-2025' is malformed")
    no_requests(sandbox)


# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize("group", ODD_IDS)
def test_odd_account_group_id_stays_one_path_segment(sonarly_conn, sandbox, figures, group):
    sandbox.set_quota(group, used=7)  # the sandbox knows this odd id, so a right request gets its quota
    sensor = SonarlyQuotaSensor(
        task_id="gate", account_group_id="{{ params.group }}", list_type="LINKEDIN_CLASSIC", mode="poke"
    )
    figures.evidence("rendered", render(sensor, group=group))
    assert sensor.account_group_id == group
    quota = figures.task(lambda: sensor.execute({}))
    assert quota["used"] == 7  # that group's quota, not another's
    [request] = sandbox.recent_requests()[-1:]
    assert request["raw_path"].startswith("/v1/accounts/") and request["raw_path"].endswith("/prospecting/quota")
    assert request["raw_path"].count("/") == 5  # one segment, whatever the id holds
    assert "?" not in request["raw_path"] and "#" not in request["raw_path"] and " " not in request["raw_path"]
    assert request["query"] == "listType=LINKEDIN_CLASSIC"  # the id added nothing to the query


@pytest.mark.parametrize("employer", ODD_IDS)
def test_odd_employer_id_travels_as_form_data_only(indeed_conn, sandbox, figures, employer):
    operator = IndeedQuotaUsageOperator(task_id="extract", employer_id="{{ params.employer }}", month="122024")
    figures.evidence("rendered", render(operator, employer=employer))
    record = figures.task(lambda: operator.execute({}))
    assert record["employer_id"] == employer
    stats = sandbox.stats()
    assert stats["tokens_issued"] == {employer: 1}  # the token represents exactly this employer
    token_request, usage_request = sandbox.recent_requests()[-2:]
    assert (token_request["raw_path"], token_request["query"]) == ("/oauth/v2/tokens", "")
    assert (usage_request["raw_path"], usage_request["query"]) == ("/ads/v1/apiquotausage", "monthYear=122024")


@pytest.mark.parametrize("value", IMPOSSIBLE_IDS)
def test_impossible_ids_are_refused_before_any_request(sonarly_conn, indeed_conn, sandbox, figures, value):
    sensor = SonarlyQuotaSensor(task_id="gate", account_group_id=value, mode="poke")
    figures.task(lambda: sensor.execute({}), expect=AirflowFailException, match="account_group_id")
    operator = IndeedQuotaUsageOperator(task_id="extract", employer_id=value, month="122024")
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match="employer_id")
    no_requests(sandbox)


# --------------------------------------------------------------------------- None where not allowed


@pytest.mark.parametrize(
    ("make", "problem", "requests"),
    [
        (lambda: SonarlyQuotaSensor(task_id="gate", sonarly_conn_id=None, mode="poke"), r"sonarly_conn_id must be", 0),
        (lambda: IndeedQuotaUsageOperator(task_id="extract", indeed_conn_id=None), r"indeed_conn_id must be", 0),
        (lambda: IndeedQuotaUsageOperator(task_id="extract", month=[None]), r"not NoneType None", 0),
        (lambda: SonarlyQuotaSensor(task_id="gate", min_remaining=None, mode="poke"), r"min_remaining must be", 0),
        (lambda: SonarlyQuotaSensor(task_id="gate", min_remaining=None, deferrable=True), r"min_remaining must be", 0),
    ],
)
def test_none_where_a_value_is_required_fails_clearly(
    sonarly_conn, indeed_conn, sandbox, figures, make, problem, requests
):
    task = make()
    figures.task(lambda: task.execute({}), expect=AirflowFailException, match=problem)
    assert sandbox.stats()["total_requests"] == requests


def test_no_account_group_and_no_employer_anywhere_says_where_to_set_them(
    monkeypatch, sandbox_server, sandbox, figures
):
    set_connection(monkeypatch, "bare_sonarly", conn_type="sonarly", host=sandbox_server.url, password=SONARLY_KEY)
    set_connection(
        monkeypatch,
        "bare_indeed",
        conn_type="indeed",
        host=sandbox_server.url,
        login=INDEED_CLIENT_ID,
        password=INDEED_SECRET,
    )
    sensor = SonarlyQuotaSensor(task_id="gate", sonarly_conn_id="bare_sonarly", account_group_id=None, mode="poke")
    figures.task(
        lambda: sensor.execute({}), expect=AirflowFailException, match=r"pass account_group_id, or set the extra"
    )
    operator = IndeedQuotaUsageOperator(
        task_id="extract", indeed_conn_id="bare_indeed", employer_id=None, month="122024"
    )
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=r"pass employer_id, or set the extra")
    no_requests(sandbox)


# --------------------------------------------------------------------------- table names


BAD_TABLES = [
    "x; DROP TABLE victim",
    'victim"; DROP TABLE victim; --',
    "victim'--",
    "`victim`",
    "[victim]",
    "a.b.c",
    "public.victim; --",
    "victim /* */",
    "victim--",
    "two words",
    "täble",
    "1victim",
    "",
    None,
]


@pytest.fixture(params=WAREHOUSES)
def victim(request: pytest.FixtureRequest) -> Any:
    """A warehouse (each of WAREHOUSES) holding a table ``victim`` with one row."""
    conn_id = warehouse_conn_id(request)
    hook = get_db_hook(conn_id)
    hook.run("DROP TABLE IF EXISTS victim")
    hook.run("CREATE TABLE victim (id INTEGER)")
    hook.run("INSERT INTO victim VALUES (42)")
    yield conn_id
    hook.run("DROP TABLE IF EXISTS victim")


@pytest.mark.parametrize("table", BAD_TABLES)
def test_table_name_that_is_not_an_identifier_is_refused_when_the_dag_is_parsed(figures, table):
    figures.task(
        lambda: IndeedQuotaUsageOperator(task_id="extract", sql_conn_id="warehouse", table=table),
        expect=InvalidParameterError,
        match=r"table .*(not an SQL identifier|must be a string)",
    )


@pytest.mark.parametrize("table", [t for t in BAD_TABLES if t])
def test_templated_table_name_is_refused_after_rendering_and_the_warehouse_is_untouched(
    indeed_conn, victim, sandbox, figures, table
):
    operator = IndeedQuotaUsageOperator(
        task_id="extract", month="122024", sql_conn_id=victim, table="{{ params.table }}"
    )
    figures.evidence("rendered", render(operator, table=table))
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=r"not an SQL identifier")
    assert list(get_db_hook(victim).get_records("SELECT id FROM victim")) == [(42,)]
    no_requests(sandbox)  # refused before the (paid) API call


# --------------------------------------------------------------------------- connections


def test_missing_connection_ids_are_named(indeed_conn, sonarly_conn, sandbox, figures):
    missing = f"missing_{uuid.uuid4().hex[:6]}"
    sensor = SonarlyQuotaSensor(task_id="gate", sonarly_conn_id=missing, mode="poke")
    figures.task(lambda: sensor.execute({}), expect=AirflowFailException, match=missing)
    operator = IndeedQuotaUsageOperator(task_id="extract", indeed_conn_id=missing, month="122024")
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=missing)
    operator = IndeedQuotaUsageOperator(task_id="extract", month="122024", sql_conn_id=missing)
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=missing)
    no_requests(sandbox)  # a missing warehouse is found before the API is called


def test_connections_of_the_wrong_type_are_named(monkeypatch, indeed_conn, sonarly_conn, sandbox, figures):
    set_connection(monkeypatch, "warehouse_pg", conn_type="postgres", host="db.invalid", login="u", schema="w")
    sensor = SonarlyQuotaSensor(task_id="gate", sonarly_conn_id=indeed_conn, mode="poke")
    figures.task(
        lambda: sensor.execute({}),
        expect=AirflowFailException,
        match=r"'indeed_default' is of type 'indeed'; SonarlyHook needs a connection of type 'sonarly'",
    )
    operator = IndeedQuotaUsageOperator(task_id="extract", indeed_conn_id="warehouse_pg", month="122024")
    figures.task(
        lambda: operator.execute({}),
        expect=AirflowFailException,
        match=r"'warehouse_pg' is of type 'postgres'; IndeedHook needs a connection of type 'indeed'",
    )
    operator = IndeedQuotaUsageOperator(task_id="extract", month="122024", sql_conn_id=sonarly_conn)
    figures.task(
        lambda: operator.execute({}),
        expect=AirflowFailException,
        match=r"'sonarly_default' gives a SonarlyHook, which is not a common\.sql DbApiHook",
    )
    no_requests(sandbox)
