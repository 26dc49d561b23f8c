"""
Data faults: answers that arrive intact but say something odd. Each one is accepted exactly, or
refused with an error naming the field; never a silent wrong number, never a row written from it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor
from airflow_provider_quota.utils.warehouse import get_db_hook
from tests.conftest import WAREHOUSES, warehouse_conn_id
from tests.reliability.conftest import START, first_event


def gate(**kwargs: Any) -> SonarlyQuotaSensor:
    kwargs.setdefault("mode", "poke")
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("timeout", 12 * 3600)
    return SonarlyQuotaSensor(task_id="gate", poke_interval=120, jitter=2.0, **kwargs)


@pytest.fixture(params=WAREHOUSES)
def warehouse(request: pytest.FixtureRequest) -> Any:
    """(connection id, fresh table) on each warehouse of WAREHOUSES."""
    conn_id = warehouse_conn_id(request)
    table = f"data_faults_{uuid.uuid4().hex[:10]}"
    yield conn_id, table
    get_db_hook(conn_id).run(f"DROP TABLE IF EXISTS {table}")


def stored_spend(conn_id: str, table: str) -> list[Decimal]:
    return [Decimal(str(spend)) for (spend,) in get_db_hook(conn_id).get_records(f"SELECT spend_amount FROM {table}")]


# --------------------------------------------------------------------------- resetAt


@pytest.mark.parametrize(
    "reset_at",
    [
        pytest.param(None, id="missing"),
        pytest.param("next tuesday", id="unparsable"),
        pytest.param(1798761600, id="epoch-number"),
        pytest.param("2026-11-16T03:00:00Z", id="six-hours-in-the-past"),
    ],
)
def test_unusable_reset_at_falls_back_to_the_poke_interval(sonarly_conn, sandbox, clock, figures, reset_at):
    """Exhausted twice with a resetAt we cannot use: the gate polls every poke_interval, never in a tight loop."""
    patch: dict[str, Any] = {"exhausted": True, "remaining": 0}
    remove = []
    if reset_at is None:
        remove = ["resetAt"]
    else:
        patch["resetAt"] = reset_at
    sandbox.add_fault("patch", endpoint="sonarly_quota", count=2, patch=patch, remove=remove)
    quota = figures.task(lambda: gate().execute({}))
    assert quota["exhausted"] is False and quota["remaining"] == 25
    assert clock.slept == [120, 120]
    assert sandbox.requests_to("sonarly_quota") == 3


def test_reset_at_hours_ahead_clock_skew_waits_for_it_in_the_triggerer(sonarly_conn, sandbox, clock, figures):
    """The API's clock runs 3 hours ahead: the deferred gate sleeps until its resetAt, then checks once."""
    skewed = (START + timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    sandbox.add_fault("patch", endpoint="sonarly_quota", count=1, patch={"exhausted": True, "resetAt": skewed})
    sensor = gate(deferrable=True)
    deferred = figures.task(lambda: sensor.execute({}), expect=TaskDeferred)
    kwargs = deferred.trigger.serialize()[1]
    figures.evidence("trigger kwargs", kwargs)
    assert kwargs["reset_at"] == START + timedelta(hours=3)
    event = figures.event(first_event(deferred.trigger), status="success")
    assert figures.task(lambda: sensor.execute_complete({}, event))["remaining"] == 25
    assert 3 * 3600 < sum(clock.slept) <= 3 * 3600 + 3
    assert sandbox.requests_to("sonarly_quota") == 2


def test_reset_at_days_ahead_never_holds_the_gate_past_its_timeout(sonarly_conn, sandbox, clock, figures):
    skewed = (START + timedelta(days=30)).isoformat()
    sandbox.add_fault("patch", endpoint="sonarly_quota", count=None, patch={"exhausted": True, "resetAt": skewed})
    figures.task(
        lambda: gate(timeout=6 * 3600).execute({}), expect=AirflowSensorTimeout, match="after the sensor's timeout"
    )
    assert clock.slept == []  # timed out at once: no wait, no second check that could only find it exhausted
    assert sandbox.requests_to("sonarly_quota") == 1


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"used": -1}, r"used: Input should be greater than or equal to 0"),
        ({"remaining": -25}, r"remaining: Input should be greater than or equal to 0"),
        ({"limit": 2**70}, r"limit: Input should be less than or equal to 9223372036854775807"),
        ({"remaining": 1.5}, r"remaining: Input should be a valid integer"),
        ({"used": "3"}, r"used: Input should be a valid integer"),
        ({"exhausted": "false"}, r"exhausted: Input should be a valid boolean"),
    ],
)
def test_sonarly_numbers_out_of_range_are_refused_by_name(
    sonarly_conn, sandbox, recorded_sleeps, figures, patch, problem
):
    sandbox.add_fault("patch", endpoint="sonarly_quota", patch=patch)
    figures.task(lambda: gate().execute({}), expect=AirflowFailException, match=problem)
    assert sandbox.requests_to("sonarly_quota") == 1  # a wrong answer is not retried into a right one


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"apiQuota": -1}, r"apiQuota: Input should be greater than or equal to 0"),
        ({"apiQuota": 10**30}, r"apiQuota: Input should be less than or equal to 9223372036854775807"),
        ({"apiUsage": [{"requestsCount": -3}]}, r"requestsCount: Input should be greater than or equal to 0"),
        ({"apiUsage": [{"requestsCount": 2**62}, {"requestsCount": 2**62}]}, r"adds up to 9223372036854775808"),
        ({"sponsoredJobsSpendAmount": Decimal("-0.01")}, r"sponsoredJobsSpendAmount: Input should be greater than"),
        ({"sponsoredJobsSpendAmount": True}, r"sponsoredJobsSpendAmount: .*not a binary float or boolean"),
        ({"sponsoredJobsSpendAmount": "a lot"}, r"sponsoredJobsSpendAmount: Input should be a valid decimal"),
        ({"currencyCode": "usd"}, r"currencyCode: String should match pattern"),
        ({"mmyyyy": "132024"}, r"mmyyyy: String should match pattern"),
    ],
)
def test_indeed_numbers_out_of_range_are_refused_and_nothing_is_written(
    indeed_conn, sqlite_conn, sandbox, recorded_sleeps, figures, patch, problem
):
    table = f"usage_{uuid.uuid4().hex[:8]}"
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", count=None, patch=patch)
    operator = IndeedQuotaUsageOperator(
        task_id="extract", month=["122024", "012025"], sql_conn_id=sqlite_conn, table=table
    )
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=problem)
    assert sandbox.requests_to("indeed_quota_usage") == 1
    hook = get_db_hook(sqlite_conn)
    assert not hook.get_records(f"SELECT name FROM sqlite_master WHERE name = '{table}'")  # nothing written


# --------------------------------------------------------------------------- fields


def test_unknown_extra_fields_are_accepted_and_ignored(sonarly_conn, indeed_conn, sandbox, figures):
    sandbox.add_fault(
        "patch", endpoint="sonarly_quota", patch={"dailyLimit": 100, "features": {"beta": True}, "x-new": None}
    )
    sandbox.add_fault(
        "patch",
        endpoint="indeed_quota_usage",
        patch={
            "billingCycle": "MONTHLY",
            "apiUsage": [{"requestsCount": 7, "endpoint": "/v1/campaigns", "costPerCall": Decimal("3.00")}],
        },
    )
    quota = figures.task(lambda: gate().execute({}))
    assert quota["remaining"] == 25 and not {"dailyLimit", "features", "x-new"} & set(quota)
    record = figures.task(lambda: IndeedQuotaUsageOperator(task_id="extract", month="012025").execute({}))
    assert record["requests_count"] == 7 and "billingCycle" not in record


@pytest.mark.parametrize("field", ["listType", "quotaType", "used", "limit", "remaining", "exhausted"])
def test_missing_sonarly_field_is_named(sonarly_conn, sandbox, figures, field):
    sandbox.add_fault("patch", endpoint="sonarly_quota", remove=[field])
    figures.task(lambda: gate().execute({}), expect=AirflowFailException, match=rf"\b{field}: Field required")


@pytest.mark.parametrize("field", ["mmyyyy", "apiQuota", "sponsoredJobsSpendAmount", "currencyCode", "apiUsage"])
def test_missing_indeed_field_is_named(indeed_conn, sandbox, figures, field):
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", remove=[field])
    operator = IndeedQuotaUsageOperator(task_id="extract", month="122024")
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=rf"\b{field}: Field required")


def test_missing_request_count_inside_api_usage_is_named(indeed_conn, sandbox, figures):
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", patch={"apiUsage": [{"requests": 3}]})
    operator = IndeedQuotaUsageOperator(task_id="extract", month="122024")
    figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=r"requestsCount: Field required")


# --------------------------------------------------------------------------- money


#: Spends past what MySQL's widest column, DECIMAL(65, 30), holds: no real spend, refused for every warehouse.
IMPLAUSIBLE = {
    "0.1000000000000000055511151231257827": r"more than 30 decimal places",  # what the float 0.1 really is
    "123456789012345678901234567890123456.5": r"36 digits before the decimal point, more than 35",
    "1e99999999": r"sponsoredJobsSpendAmount",  # 13 bytes of JSON, 100 MB in plain notation
}


@pytest.mark.parametrize(
    "spend",
    [
        "0.100000000000000005551115123126",  # the float 0.1 to 30 places
        "1234.567890123456789012345",
        "123456789012345678901234567890.123456789",  # 39 digits, past any float and Decimal's 28-digit context
        "12345678901234567890123456789012345.5",  # 35 digits before the point
        *IMPLAUSIBLE,
        "0.000000000000000001",
        "3000.10",  # the trailing zero is kept
        "0",
    ],
)
def test_spend_with_many_decimals_is_kept_exact_in_xcom_and_in_the_warehouse(
    indeed_conn, sandbox, warehouse, figures, spend
):
    """Every digit reaches XCom and the table, or, for a spend no column holds, the task fails and writes nothing."""
    conn_id, table = warehouse
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", patch={"sponsoredJobsSpendAmount": Decimal(spend)})
    operator = IndeedQuotaUsageOperator(task_id="extract", month="022025", sql_conn_id=conn_id, table=table)
    refusal = IMPLAUSIBLE.get(spend)
    if refusal:
        figures.task(lambda: operator.execute({}), expect=AirflowFailException, match=refusal)
        assert not get_db_hook(conn_id).inspector.has_table(table)  # refused before the write: no table, no row
        assert sandbox.requests_to("indeed_quota_usage") == 1  # and not retried
        return
    record = figures.task(lambda: operator.execute({}))
    assert Decimal(record["spend_amount"]) == Decimal(spend)
    assert Decimal(record["spend_amount"]).as_tuple() == Decimal(spend).as_tuple()  # same digits, same exponent
    [stored] = stored_spend(conn_id, table)
    assert stored == Decimal(spend)


@pytest.mark.parametrize(("sent", "plain"), [("1.5E3", "1500"), ("1E-18", "0.000000000000000001"), ("2.50E+1", "25.0")])
def test_spend_in_exponent_notation_reaches_xcom_and_the_warehouse_in_plain_notation(
    indeed_conn, sandbox, warehouse, figures, sent, plain
):
    """An analyst's cast of "1.5E+3" to a number fails in many tools: the value is written out in full."""
    conn_id, table = warehouse
    sandbox.add_fault("patch", endpoint="indeed_quota_usage", patch={"sponsoredJobsSpendAmount": Decimal(sent)})
    operator = IndeedQuotaUsageOperator(task_id="extract", month="022025", sql_conn_id=conn_id, table=table)
    record = figures.task(lambda: operator.execute({}))
    assert record["spend_amount"] == plain
    [stored] = stored_spend(conn_id, table)
    assert stored == Decimal(plain)
    if get_db_hook(conn_id).dialect_name == "sqlite":  # a TEXT column: the text itself
        assert get_db_hook(conn_id).get_records(f"SELECT spend_amount FROM {table}") == [(plain,)]
