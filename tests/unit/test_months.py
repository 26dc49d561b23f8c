"""Month parsing and validation."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from airflow_provider_quota.exceptions import InvalidMonthError
from airflow_provider_quota.utils.months import current_month, format_month, parse_month, previous_month

NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("122024", date(2024, 12, 1)),
        ("2024-12", date(2024, 12, 1)),
        ("112026", date(2026, 11, 1)),
        (date(2025, 7, 31), date(2025, 7, 1)),
        (datetime(2025, 7, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))), date(2025, 8, 1)),  # UTC: Aug 1
    ],
)
def test_valid_months(value, expected):
    assert parse_month(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("132025", "not a real month"),
        ("002025", "not a real month"),
        ("2025-13", "not a real month"),
        ("112024", "before 122024"),
        ("122026", "in the future"),
        ("", "empty string"),
        ("   ", "empty string"),
        ("12/2024", "malformed"),
        (" 122024", "malformed"),
        (None, "not NoneType"),
        (True, "not bool"),
    ],
)
def test_invalid_months(value, problem):
    with pytest.raises(InvalidMonthError, match=problem):
        parse_month(value, now=NOW)


def test_helpers():
    assert format_month(date(2025, 1, 1)) == "012025"
    assert previous_month(date(2025, 1, 1)) == date(2024, 12, 1)
    assert previous_month(date(2025, 3, 1)) == date(2025, 2, 1)
    assert current_month(datetime(2025, 2, 28, 23, 30, tzinfo=timezone(timedelta(hours=-2)))) == date(2025, 3, 1)
