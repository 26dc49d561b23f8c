"""
Limits, read exactly and refused by name: what a DAG author gives (a budget, a fraction, a count,
``hook_params``) before any request, and how wide money may be, wherever it comes from.

Light on purpose: it is imported when DAGs are parsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_quota.exceptions import InvalidParameterError

#: Digits of money before and after the decimal point (MySQL's widest column, DECIMAL(65, 30)): any
#: real amount, and what every warehouse the provider writes holds.
MONEY_INTEGER_DIGITS, MONEY_PLACES = 35, 30


def decimal_overflow(value: Decimal, *, integer_digits: int, places: int) -> str | None:
    """
    What makes ``value`` too wide for ``integer_digits`` digits before the point and ``places`` after, or None.

    Trailing zeros after the point are no loss (``3000.100`` fits two places). Not
    ``Decimal.normalize()``: it rounds to the context's 28 digits.
    """
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return "is not a finite number"
    if not any(digits):
        return None
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))  # linear: millions of digits are fine
    dropped = min(trailing_zeros, max(-exponent, 0))
    count, exponent = len(digits) - dropped, exponent + dropped
    if -exponent > places:
        return f"has more than {places} decimal places ({-exponent})"
    if count + exponent > integer_digits:
        return f"has {count + exponent} digits before the decimal point, more than {integer_digits}"
    return None


def without_zeros_past(value: Decimal, places: int) -> Decimal:
    """
    ``value`` without the zeros it carries past ``places`` decimal places (only zeros may lie there).

    Exact, and bounded in writing: ``0E-99999999`` (12 bytes) would be 100 MB of plain text.
    """
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= -places:
        return value
    kept = digits[: len(digits) - (-places - exponent)]
    assert not any(digits[len(kept) :]), "only zeros may be dropped"
    return Decimal((sign, kept or (0,), -places))


def hook_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """
    A task's ``hook_params``, validated by :class:`~airflow_provider_quota.hooks.base.HttpSettings`.

    The hooks are imported only when some are given, so that parsing a DAG stays light.
    """
    if not params:
        return {}
    from airflow_provider_quota.hooks.base import HttpSettings

    return HttpSettings.params(params)


def is_templated(value: object) -> bool:
    """
    Whether ``value`` is known only when the task runs, and validated then: a Jinja template, or
    anything else that is not a plain value (an upstream task's output, an ``XComArg``).
    """
    if isinstance(value, str):
        return "{{" in value
    return not isinstance(value, (int, float, Decimal, type(None)))


def parse_decimal(value: object, *, name: str, low: Decimal, high: Decimal, money: bool = False) -> Decimal:
    """
    ``value`` as an exact Decimal in ``(low, high]`` (``[low, high]`` for money).

    :param value: a Decimal, an int or a numeric string (rendered templates are strings); a float
        only when not ``money``, read as the shortest text that gives it back (``0.9`` is ``0.9``).
    :param name: the argument's name, for the error.
    :param money: a budget: ``low`` itself is allowed. Any number has at most 35 digits before the
        point and 30 after (``1E-99999999`` would be 100 MB of text in a log line).
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
    too_wide = decimal_overflow(number, integer_digits=MONEY_INTEGER_DIGITS, places=MONEY_PLACES)
    if not in_range or too_wide:
        bounds = f"from {low} to {high}" if money else f"above {low} and at most {high}"
        raise InvalidParameterError(f"{name} must be {bounds}, not {value!r:.80}")
    return without_zeros_past(number, MONEY_PLACES)


def check_seconds(value: object, *, name: str, low: float = 0.0, high: float = 3600.0) -> float:
    """``value`` as seconds in ``[low, high]``: an int or a float, never a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InvalidParameterError(f"{name} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


def parse_count(value: object, *, name: str) -> int:
    """``value`` as a non-negative integer that fits a BIGINT (it may be rendered from a template as text)."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidParameterError(f"{name} must be a non-negative integer, not {value!r:.80}")
    return value
