"""Months as the Indeed API knows them: ``MMyyyy``, from 12/2024 to the current month (UTC)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_quota.exceptions import InvalidMonthError

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The first month the Indeed apiquotausage endpoint serves.
FIRST_MONTH = date(2024, 12, 1)
#: The ``month`` value that extracts the current month to date (``monthYear`` left out: the API decides).
CURRENT_MONTH = "current"

_MMYYYY = re.compile(r"(\d{2})(\d{4})")
_YYYY_MM = re.compile(r"(\d{4})-(\d{2})")


def current_month(now: datetime | None = None) -> date:
    """Return the first day of the current month in UTC."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    return date(now.year, now.month, 1)


def previous_month(month: date) -> date:
    """Return the first day of the month before ``month``."""
    return date(month.year - 1, 12, 1) if month.month == 1 else date(month.year, month.month - 1, 1)


def format_month(month: date) -> str:
    """Format a month the way the Indeed API wants it: ``MMyyyy``."""
    return f"{month.month:02d}{month.year:04d}"


def parse_month(value: object, *, now: datetime | None = None) -> date:
    """
    Parse and validate a month, before anything is sent to the API.

    :param value: ``"MMyyyy"`` (``"122024"``), ``"YYYY-MM"`` (``"2024-12"``), a date or a datetime.
    :param now: the current time, for tests; defaults to the wall clock (UTC).
    :return: the first day of that month.
    :raise InvalidMonthError: naming the value when it is malformed, not a real month,
        before 12/2024 or in the future.
    """
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        month = date(value.year, value.month, 1)
    elif isinstance(value, date):
        month = date(value.year, value.month, 1)
    elif isinstance(value, str):
        month = _parse_month_string(value)
    else:
        raise InvalidMonthError(
            f"month must be a 'MMyyyy' or 'YYYY-MM' string, a date or a datetime, not {type(value).__name__} {value!r}"
        )
    if month < FIRST_MONTH:
        raise InvalidMonthError(
            f"month {format_month(month)} is before 122024 (December 2024), the first month the Indeed API reports"
        )
    this_month = current_month(now)
    if month > this_month:
        raise InvalidMonthError(
            f"month {format_month(month)} is in the future (the current month is {format_month(this_month)})"
        )
    return month


def _parse_month_string(text: str) -> date:
    if not text.strip():
        raise InvalidMonthError("month is an empty string; use 'MMyyyy' (e.g. '122024') or 'YYYY-MM'")
    if m := _MMYYYY.fullmatch(text):
        month_number, year = int(m.group(1)), int(m.group(2))
    elif m := _YYYY_MM.fullmatch(text):
        year, month_number = int(m.group(1)), int(m.group(2))
    else:
        raise InvalidMonthError(f"month {text!r} is malformed; use 'MMyyyy' (e.g. '122024') or 'YYYY-MM'")
    if not 1 <= month_number <= 12:
        raise InvalidMonthError(f"month {text!r} is not a real month: {month_number} is not between 01 and 12")
    if year < 1:
        raise InvalidMonthError(f"month {text!r} is not a real month: there is no year {year}")
    return date(year, month_number, 1)


def month_for_run(context: Context) -> date:
    """
    The month a DAG run is responsible for.

    With an interval timetable (``data_interval_end > data_interval_start``): the month of
    ``data_interval_start``. With a trigger timetable (Airflow 3's default for cron schedules:
    start == end == logical date) or a manual run: the calendar month before the logical
    date (or before ``run_after`` when there is none), i.e. the last completed month.
    Months are read in the DAG's own time zone: the task receives these dates in UTC, where a
    monthly run at midnight in Paris starts on the last day of the previous month.
    """
    dag_timezone = getattr(context.get("dag"), "timezone", None)

    def local(moment: datetime) -> datetime:
        return moment.astimezone(dag_timezone) if dag_timezone is not None and moment.tzinfo else moment

    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    if start is not None and end is not None and end > start:
        first = local(start)
        return date(first.year, first.month, 1)
    moment = local(
        context.get("logical_date")
        or start
        or getattr(context.get("dag_run"), "run_after", None)
        or datetime.now(timezone.utc)
    )
    return previous_month(date(moment.year, moment.month, 1))


def months_to_extract(requested: Any, context: Context) -> list[date | None]:
    """
    The months a task extracts, validated, in order, each once.

    :param requested: None (the run's month, :func:`month_for_run`), ``"current"`` (None in the
        result: the API's current month), a month :func:`parse_month` reads, or a list of them.
        ``"current"`` and this month named explicitly are one month: it is asked for once.
    :raise InvalidMonthError: for an empty list or any invalid month, before any request.
    """
    if requested is None:
        return [parse_month(month_for_run(context))]
    values = list(requested) if isinstance(requested, Sequence) and not isinstance(requested, str) else [requested]
    if not values:
        raise InvalidMonthError("month is an empty list; give at least one month")
    months = [None if value == CURRENT_MONTH else parse_month(value) for value in values]
    if None in months and len(months) > 1:
        this_month = current_month()
        months = [this_month if month is None else month for month in months]
    return list(dict.fromkeys(months))
