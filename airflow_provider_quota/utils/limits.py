"""Limits a DAG author gives (a budget, a fraction, a count), read exactly and refused by name before any request."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from airflow_provider_quota.exceptions import InvalidParameterError

#: A budget has at most this many digits before the point and places after it (what a warehouse column holds).
BUDGET_INTEGER_DIGITS, BUDGET_PLACES = 35, 30


def is_templated(value: object) -> bool:
    """Whether ``value`` is a Jinja template, validated only once rendered."""
    return isinstance(value, str) and "{{" in value


def parse_decimal(value: object, *, name: str, low: Decimal, high: Decimal, money: bool = False) -> Decimal:
    """
    ``value`` as an exact Decimal in ``(low, high]`` (``[low, high]`` for money).

    :param value: a Decimal, an int or a numeric string (rendered templates are strings); a float
        only when not ``money``, read as the shortest text that gives it back (``0.9`` is ``0.9``).
    :param name: the argument's name, for the error.
    :param money: a budget: ``low`` itself is allowed, at most 35 digits before the point and 30 after.
    :raise InvalidParameterError: naming ``name``, for anything else (NaN, infinity, bool, out of range).
    """
    number: Decimal | None = None
    if isinstance(value, (Decimal, int, str)) and not isinstance(value, bool):
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            number = None
    elif isinstance(value, float) and not money:
        number = Decimal(repr(value))
    if number is None or not number.is_finite():
        kind = "an exact decimal (a string, an int or a Decimal, never a float)" if money else "a number"
        raise InvalidParameterError(f"{name} must be {kind}, not {value!r:.80}")
    in_range = low <= number <= high if money else low < number <= high
    digits, exponent = number.as_tuple().digits, int(number.as_tuple().exponent)
    too_wide = money and (len(digits) + exponent > BUDGET_INTEGER_DIGITS or -exponent > BUDGET_PLACES)
    if not in_range or too_wide:
        bounds = f"from {low} to {high}" if money else f"above {low} and at most {high}"
        raise InvalidParameterError(f"{name} must be {bounds}, not {value!r:.80}")
    return number


def parse_count(value: object, *, name: str) -> int:
    """``value`` as a non-negative integer that fits a BIGINT (it may be rendered from a template as text)."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidParameterError(f"{name} must be a non-negative integer, not {value!r:.80}")
    return value
