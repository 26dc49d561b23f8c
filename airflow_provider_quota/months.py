"""Months as the Indeed API knows them: ``MMyyyy``, from 12/2024 to the current month (UTC)."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

from airflow_provider_quota.exceptions import InvalidMonthError

#: The first month the Indeed apiquotausage endpoint serves.
FIRST_MONTH = date(2024, 12, 1)

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
    return date(year, month_number, 1)
