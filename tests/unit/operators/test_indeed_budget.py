"""IndeedBudgetCheckOperator against the sandbox, with time travel: every breach, pacing edges, DST, soft_fail."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
import time_machine
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_quota.exceptions import InvalidParameterError
from airflow_provider_quota.operators.indeed import IndeedBudgetCheckOperator

UTC = timezone.utc
PARIS = pendulum.timezone("Europe/Paris")
NEW_YORK = pendulum.timezone("America/New_York")
#: Mid-May 2026 in UTC: 15.5 of May's 31 days have passed, half the month.
MID_MAY = datetime(2026, 5, 16, 12, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def check(*, zone: Any = UTC, context: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run a check of emp-acme (USD) with the DAG in ``zone``; limits default to a 3100 USD budget."""
    kwargs.setdefault("budget", "3100")
    kwargs.setdefault("currency", "USD")
    kwargs.setdefault("month", "current")
    operator = IndeedBudgetCheckOperator(task_id="check_budget", **kwargs)
    return operator.execute({"dag": SimpleNamespace(timezone=zone), **(context or {})})  # type: ignore[arg-type]


def breaches(caught: pytest.ExceptionInfo[BaseException]) -> str:
    return str(caught.value)


@pytest.fixture
def at(indeed_conn, sandbox):
    """``at(moment, spend=..., requests_count=..., api_quota=...)``: travel there and set the month's usage."""
    with time_machine.travel(MID_MAY, tick=False) as traveller:

        def move(moment: datetime, **usage: Any) -> None:
            traveller.move_to(moment)
            if usage:
                sandbox.set_usage("emp-acme", **usage)

        yield move


def test_within_every_limit_returns_the_record(at, sandbox):
    at(MID_MAY, spend="1550.00", requests_count=1200, api_quota=3000)
    record = check(max_pace="1.2", max_api_quota_used="0.9")
    assert record == {
        "employer_id": "emp-acme",
        "month": "052026",
        "month_complete": False,
        "checked_at": "2026-05-16T12:00:00+00:00",
        "currency_code": "USD",
        "spend_amount": "1550.00",
        "budget": "3100",
        "elapsed_fraction": "0.5",
        "expected_to_date": "1550",
        "pace_ratio": "1",
        "max_pace": "1.2",
        "requests_count": 1200,
        "api_quota": 3000,
        "api_quota_share_used": "0.4",
        "max_api_quota_used": "0.9",
        "breaches": [],
    }
    assert json.loads(json.dumps(record)) == record
    stats = sandbox.stats()  # one check: one token, one usage request
    assert (stats["requests"]["indeed_token"], stats["requests"]["indeed_quota_usage"]) == (1, 1)


@pytest.mark.parametrize(("spend", "breached"), [("1859.99", False), ("1860.00", True)])
def test_pace_at_or_above_max_pace_is_a_breach(at, spend, breached):
    at(MID_MAY, spend=spend, requests_count=0)  # expected to date: 3100 x 1/2 = 1550; 1.2 x 1550 = 1860
    if not breached:
        assert check(max_pace="1.2")["pace_ratio"] == "1.199994"
        return
    with pytest.raises(AirflowFailException) as caught:
        check(max_pace="1.2")
    assert breaches(caught) == (
        "Indeed budget check of employer emp-acme for 052026: 1) spend 1860.00 USD is 1.2 times the 1550 USD "
        "expected by 2026-05-16T12:00:00+00:00 (50 % of 052026 elapsed in UTC), at or above max_pace 1.2"
    )


@pytest.mark.parametrize(("requests_count", "breached"), [(2699, False), (2700, True)])
def test_api_quota_share_at_or_above_the_limit_is_a_breach(at, requests_count, breached):
    at(MID_MAY, spend="0", requests_count=requests_count, api_quota=3000)
    if not breached:
        assert check(max_api_quota_used=0.9)["api_quota_share_used"] == "0.899667"
        return
    with pytest.raises(AirflowFailException, match=r"1\) 2700 of 3000 API requests used in 052026 \(0.9 of apiQuota\)"):
        check(max_api_quota_used=0.9)


def test_an_api_quota_check_needs_no_budget(at):
    at(MID_MAY, spend="999999", requests_count=10, api_quota=0)  # an apiQuota of 0 is all used
    with pytest.raises(AirflowFailException, match=r"10 of 0 API requests used in 052026 \(1 of apiQuota\)"):
        check(budget=None, currency=None, max_api_quota_used="1")


@pytest.mark.parametrize(("spend", "breached"), [("3100.00", False), ("3100.01", True)])
def test_a_completed_month_over_budget_is_a_breach(at, spend, breached):
    at(utc(2026, 6, 2, 8), month="052026", spend=spend, requests_count=100)
    if breached:
        with pytest.raises(
            AirflowFailException, match=r"1\) spend 3100.01 USD for the month 052026 is over the budget of 3100 USD$"
        ):
            check(month="2026-05", max_pace="1.2")
        return
    record = check(month="2026-05", max_pace="1.2")  # a completed month is not paced
    assert (record["month_complete"], record["elapsed_fraction"], record["pace_ratio"]) == (True, "1", "1")
    assert record["breaches"] == []


def test_spend_over_the_whole_budget_mid_month_is_a_breach_even_within_pace(at):
    at(MID_MAY, spend="3100.50", requests_count=0)
    with pytest.raises(
        AirflowFailException, match=r"1\) spend 3100.50 USD for the month so far 052026 is over the budget"
    ):
        check(max_pace="100")


def test_every_breach_is_listed_in_one_message(at):
    at(MID_MAY, spend="4000", requests_count=2999, api_quota=3000)
    with pytest.raises(AirflowFailException) as caught:
        check(max_pace="1.2", max_api_quota_used="0.95")
    message = breaches(caught)
    assert message.startswith(
        "Indeed budget check of employer emp-acme for 052026: 1) spend 4000 USD for the month so far"
    )
    assert "; 2) spend 4000 USD is 2.580645 times the 1550 USD expected" in message
    assert "; 3) 2999 of 3000 API requests used in 052026 (0.999667 of apiQuota)" in message


def test_soft_fail_skips_with_every_breach(at):
    at(MID_MAY, spend="4000", requests_count=2999, api_quota=3000)
    with pytest.raises(AirflowSkipException, match=r"1\) spend 4000 USD .*; 2\) .*; 3\) 2999 of 3000"):
        check(max_pace="1.2", max_api_quota_used="0.95", soft_fail=True)


@pytest.mark.parametrize("soft_fail", [False, True])
def test_currency_mismatch_fails_naming_both_even_with_soft_fail(at, sandbox, soft_fail):
    at(MID_MAY)
    with pytest.raises(AirflowFailException, match="the budget is in EUR but Indeed bills employer emp-acme in USD"):
        check(currency="eur", soft_fail=soft_fail)
    assert sandbox.requests_to("indeed_quota_usage") == 1


# ----------------------------------------------------------------------------------- pacing edges


def test_first_instant_of_the_month_expects_nothing_and_paces_nothing(at):
    at(utc(2026, 5, 1), spend="10", requests_count=0)
    record = check(max_pace="1.2")
    assert (record["elapsed_fraction"], record["expected_to_date"], record["pace_ratio"]) == ("0", "0", None)
    assert record["breaches"] == []
    # ...but spend above the whole budget is a breach at any instant
    at(utc(2026, 5, 1), spend="3100.01")
    with pytest.raises(AirflowFailException, match="over the budget"):
        check(max_pace="1.2")


def test_a_month_not_yet_begun_in_the_dag_time_zone_counts_as_its_first_instant(at):
    # 00:00 UTC on 1 May is still 30 April in New York: the API's May has begun, New York's has not.
    at(utc(2026, 5, 1, 3, 59), spend="10", requests_count=0)
    record = check(zone=NEW_YORK, max_pace="1.2")
    assert (record["month"], record["elapsed_fraction"], record["pace_ratio"]) == ("052026", "0", None)


def test_last_instant_of_the_month_in_the_dag_time_zone_is_still_paced(at):
    # May ends in Paris at 2026-05-31T22:00Z; the API (UTC) is still in May after that.
    last = utc(2026, 5, 31, 21, 59, 59) + timedelta(microseconds=999_999)
    at(last, spend="3100", requests_count=0)
    with pytest.raises(
        AirflowFailException, match=r"is 1 times the 3100 USD expected by 2026-05-31T23:59:59\+02:00 \(100 %"
    ):
        check(zone=PARIS, max_pace="1")  # the pace is 1 + 1/2678399999999: rounded to 1, still at or above 1
    at(utc(2026, 5, 31, 22))  # the first instant of June in Paris: May is complete, no pace
    record = check(zone=PARIS, max_pace="1")
    assert (record["month"], record["month_complete"], record["breaches"]) == ("052026", True, [])


@pytest.mark.parametrize(
    ("moment", "budget", "expected", "elapsed"),
    [
        # March 2026 in Paris: 743 hours (clocks go forward on the 29th at 02:00 CET). 03:00 CEST on
        # the 29th is 674 hours in; a wall-clock count would say 675 of 744.
        (utc(2026, 3, 29, 1), "743", "674", "0.907133"),
        (utc(2026, 3, 29, 0, 59, 59), "743", "673.999722", "0.907133"),
        # October 2026 in Paris: 745 hours (clocks go back on the 25th at 03:00 CEST); noon UTC on the 25th
        # is 590 hours in.
        (utc(2026, 10, 25, 12), "745", "590", "0.791946"),
    ],
)
def test_pacing_counts_the_hours_of_a_dst_change_in_the_dag_time_zone(at, moment, budget, expected, elapsed):
    at(moment, spend="0", requests_count=0)
    record = check(zone=PARIS, budget=budget, max_pace="1.2")
    assert (record["expected_to_date"], record["elapsed_fraction"]) == (expected, elapsed)


# ----------------------------------------------------------------------------------- which month


def test_default_month_is_the_run_month_in_the_dag_time_zone(at, sandbox):
    # A daily trigger-timetable run at 00:30 in Paris on 1 June checks May (the month before), complete.
    at(utc(2026, 5, 31, 22, 30), month="052026", spend="3200", requests_count=0)
    context = {"logical_date": utc(2026, 5, 31, 22, 30), "data_interval_start": None, "data_interval_end": None}
    with pytest.raises(AirflowFailException, match="for the month 052026 is over the budget"):
        check(zone=PARIS, month=None, context=context)
    assert sandbox.recent_requests()[-1]["query"] == "monthYear=052026"


def test_a_list_of_months_is_refused_before_any_request(indeed_conn, sandbox):
    with pytest.raises(AirflowFailException, match="month must be one month"):
        check(month=["052026"])
    assert sandbox.stats()["total_requests"] == 0


# ----------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"budget": 0.1}, r"budget must be an exact decimal .* not 0.1"),
        ({"budget": "NaN"}, "budget must be an exact decimal"),
        ({"budget": "-1"}, "budget must be from 0 to"),
        ({"budget": "1e40"}, "budget must be from 0 to"),
        ({"budget": "0." + "0" * 30 + "1"}, "budget must be from 0 to"),
        ({"budget": True}, "budget must be an exact decimal"),
        ({"budget": "5000", "currency": None}, "currency must be an ISO 4217 code"),
        ({"budget": "5000", "currency": "dollars"}, "currency must be an ISO 4217 code"),
        ({"max_pace": "0"}, "max_pace must be above 0 and at most 100"),
        ({"max_pace": float("inf")}, "max_pace must be a number"),
        ({"max_pace": "1E-99999999"}, "max_pace must be above 0 and at most 100"),  # 100 MB written out
        ({"max_api_quota_used": "1.5"}, "max_api_quota_used must be above 0 and at most 1"),
        ({"budget": None, "currency": None}, "nothing to check"),
        ({"budget": None, "currency": None, "max_pace": "1.2", "max_api_quota_used": "0.9"}, "max_pace needs a budget"),
    ],
)
def test_bad_limits_fail_when_the_dag_is_parsed(kwargs, problem):
    params = {"budget": "5000", "currency": "USD", **kwargs}
    with pytest.raises(InvalidParameterError, match=problem):
        IndeedBudgetCheckOperator(task_id="check_budget", **params)


def test_a_budget_from_an_upstream_task_is_validated_when_the_task_runs():
    from airflow.sdk import DAG, task

    with DAG(dag_id="budget_from_upstream", schedule=None):

        @task
        def budget_of_the_month() -> str:
            return "5000"

        operator = IndeedBudgetCheckOperator(task_id="check_budget", budget=budget_of_the_month(), currency="USD")
    assert operator.budget is not None  # no InvalidParameterError when the DAG is parsed


def test_a_budget_keeps_no_zeros_past_what_a_column_holds():
    operator = IndeedBudgetCheckOperator(task_id="check_budget", budget="0E-99999999", currency="USD")
    budget = operator._limits().budget
    assert budget == 0 and budget is not None and len(format(budget, "f")) <= 2 + 30


def test_templated_limits_are_validated_once_rendered_before_any_request(indeed_conn, sandbox):
    operator = IndeedBudgetCheckOperator(task_id="check_budget", budget="{{ var.value.budget }}", currency="USD")
    operator.budget = "five thousand"  # what the template rendered
    with pytest.raises(AirflowFailException, match="budget must be an exact decimal"):
        operator.execute({})  # type: ignore[arg-type]
    assert sandbox.stats()["total_requests"] == 0


def test_template_fields():
    assert set(IndeedBudgetCheckOperator.template_fields) == {
        "indeed_conn_id",
        "employer_id",
        "month",
        "budget",
        "currency",
        "max_pace",
        "max_api_quota_used",
    }


@pytest.mark.parametrize(
    ("spend", "breached"),
    [("3100.000000000000000000000000000001", False), ("3100.000000000000000000000000000002", True)],
)
def test_money_is_compared_to_the_last_place(at, spend, breached):
    at(utc(2026, 6, 1, 8), month="052026", spend=spend, requests_count=0)
    if breached:
        with pytest.raises(AirflowFailException, match=f"spend {spend} USD for the month 052026 is over the budget"):
            check(month="052026", budget="3100.000000000000000000000000000001")
        return
    record = check(month="052026", budget="3100.000000000000000000000000000001")
    assert (record["spend_amount"], record["budget"]) == (spend, "3100.000000000000000000000000000001")
    assert record["breaches"] == []  # as floats both would be 3100.0
