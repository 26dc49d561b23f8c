"""
What an Indeed budget check finds: spend against a budget and its month-to-date pace, and the API quota used.

Exact throughout: money is Decimal, ratios are :class:`~fractions.Fraction` and every breach is
decided on exact values. The derived figures of the record (expected spend to date, pace ratio,
elapsed fraction, share of the quota used) are rounded half-even to 6 decimal places for display.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from airflow_provider_quota.exceptions import InvalidParameterError
from airflow_provider_quota.utils.limits import parse_decimal

if TYPE_CHECKING:
    from airflow_provider_quota.models import ApiQuotaUsage

_ZERO, _ONE = Decimal(0), Decimal(1)


@dataclass(frozen=True)
class BudgetLimits:
    """The limits of a check, validated: see :meth:`parse`."""

    budget: Decimal | None
    currency: str | None
    max_pace: Decimal | None
    max_api_quota_used: Decimal | None

    @classmethod
    def parse(cls, *, budget: object, currency: object, max_pace: object, max_api_quota_used: object) -> BudgetLimits:
        """
        Validate the limits a DAG author gave, before any request.

        :raise InvalidParameterError: naming the argument that is wrong, missing or useless.
        """
        if budget is None and max_api_quota_used is None:
            raise InvalidParameterError("give a budget, a max_api_quota_used, or both: there is nothing to check")
        if budget is None and max_pace is not None:
            raise InvalidParameterError("max_pace needs a budget to pace against")
        code = currency.strip().upper() if isinstance(currency, str) else currency
        if (budget is not None or code is not None) and not (
            isinstance(code, str) and len(code) == 3 and code.isalpha()
        ):
            raise InvalidParameterError(
                f"currency must be an ISO 4217 code such as 'USD' to go with a budget, not {currency!r:.40}"
            )
        return cls(
            budget=None
            if budget is None
            else parse_decimal(budget, name="budget", low=_ZERO, high=Decimal("1e35"), money=True),
            currency=code,
            max_pace=None
            if max_pace is None
            else parse_decimal(max_pace, name="max_pace", low=_ZERO, high=Decimal(100)),
            max_api_quota_used=None
            if max_api_quota_used is None
            else parse_decimal(max_api_quota_used, name="max_api_quota_used", low=_ZERO, high=_ONE),
        )


def month_span(month: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The first instants of ``month`` and of the month after it in ``zone``, as UTC: DST hours count as they pass."""
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    start, end = (datetime(d.year, d.month, 1, tzinfo=zone).astimezone(timezone.utc) for d in (month, following))
    return start, end


def _rounded(value: Fraction | None) -> str | None:
    if value is None:
        return None
    with localcontext() as context:
        context.prec = 100
        text = format((Decimal(value.numerator) / value.denominator).quantize(Decimal("1e-6"), ROUND_HALF_EVEN), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def check_budget(usage: ApiQuotaUsage, limits: BudgetLimits, *, now: datetime, zone: tzinfo) -> dict[str, Any]:
    """
    The record of one check, with its breaches (kind and sentence each).

    The month is complete when ``now`` is at or after its end in ``zone``: spend above the budget is
    a breach. Otherwise the expected spend to date is ``budget x elapsed fraction`` of the month
    in ``zone``; a pace ratio (spend / expected) at or above ``max_pace`` is a breach, and so is
    spend already above the whole budget. A share of ``apiQuota`` used at or above
    ``max_api_quota_used`` is a breach in any month (an ``apiQuota`` of 0 counts as all used).

    :param usage: what the API answered.
    :param limits: the validated limits.
    :param now: the instant the usage was read (the spend is to date as of then).
    :param zone: the DAG's time zone.
    :raise InvalidParameterError: when the API bills in another currency than ``limits.currency``.
    """
    if limits.currency is not None and usage.currency_code != limits.currency:
        raise InvalidParameterError(
            f"currency mismatch: the budget is in {limits.currency} but Indeed bills employer "
            f"{usage.employer_id} in {usage.currency_code}; no spend was compared"
        )
    start, end = month_span(usage.month_start, zone)
    complete = now >= end
    micro = timedelta(microseconds=1)
    elapsed = Fraction(1) if complete else Fraction(max(now - start, timedelta(0)) // micro, (end - start) // micro)
    spend, budget, unit, month = Fraction(usage.spend_amount), limits.budget, usage.currency_code, usage.month
    expected = None if budget is None else Fraction(budget) * elapsed
    pace = spend / expected if expected else None
    share = Fraction(usage.requests_count, usage.api_quota) if usage.api_quota else Fraction(1)
    spend_text = f"{usage.spend_amount:f} {unit}"
    breaches = []
    if budget is not None and spend > budget:
        state = "month" if complete else "month so far"
        breaches.append(
            ("over_budget", f"spend {spend_text} for the {state} {month} is over the budget of {budget:f} {unit}")
        )
    if pace is not None and limits.max_pace is not None and not complete and pace >= limits.max_pace:
        breaches.append(
            (
                "ahead_of_pace",
                f"spend {spend_text} is {_rounded(pace)} times the {_rounded(expected)} {unit} expected by "
                f"{now.astimezone(zone).isoformat(timespec='seconds')} ({_rounded(elapsed * 100)} % of {month} "
                f"elapsed in {zone}), at or above max_pace {limits.max_pace:f}",
            )
        )
    if limits.max_api_quota_used is not None and share >= limits.max_api_quota_used:
        breaches.append(
            (
                "api_quota",
                f"{usage.requests_count} of {usage.api_quota} API requests used in {month} ({_rounded(share)} of "
                f"apiQuota), at or above max_api_quota_used {limits.max_api_quota_used:f}",
            )
        )
    return {
        "employer_id": usage.employer_id,
        "month": month,
        "month_complete": complete,
        "checked_at": now.isoformat(),
        "currency_code": usage.currency_code,
        "spend_amount": f"{usage.spend_amount:f}",
        "budget": None if budget is None else f"{budget:f}",
        "elapsed_fraction": _rounded(elapsed),
        "expected_to_date": _rounded(expected),
        "pace_ratio": _rounded(pace),
        "max_pace": None if limits.max_pace is None else f"{limits.max_pace:f}",
        "requests_count": usage.requests_count,
        "api_quota": usage.api_quota,
        "api_quota_share_used": _rounded(share),
        "max_api_quota_used": None if limits.max_api_quota_used is None else f"{limits.max_api_quota_used:f}",
        "breaches": [{"kind": kind, "message": message} for kind, message in breaches],
    }
