"""Payload models: strict counts, exact money, lenient resetAt, the usability rule."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from airflow_provider_quota.exceptions import UnexpectedResponseError
from airflow_provider_quota.models import AccessToken, ApiQuotaUsage, ApiQuotaUsageData, ProspectingQuota, parse_payload

BASE = {
    "listType": "LINKEDIN_CLASSIC",
    "quotaType": "linkedinClassicSearch",
    "used": 3,
    "limit": 25,
    "remaining": 22,
    "resetAt": "2026-04-28T15:30:00.000Z",
    "exhausted": False,
}


def quota(**changes):
    return ProspectingQuota.model_validate({**BASE, **changes})


@pytest.mark.parametrize(
    ("changes", "min_remaining", "usable"),
    [
        ({}, 1, True),
        ({}, 22, True),
        ({}, 23, False),
        ({"remaining": 0, "used": 25, "exhausted": True}, 1, False),
        # The API's own example: remaining 25 yet exhausted. exhausted wins: wait.
        ({"used": 25, "remaining": 25, "exhausted": True}, 1, False),
        ({"remaining": 0, "exhausted": False}, 0, True),
        ({"remaining": 0, "exhausted": False}, 1, False),
    ],
)
def test_usability_rule(changes, min_remaining, usable):
    assert quota(**changes).is_usable(min_remaining) is usable


def test_reset_at_is_utc_aware():
    assert quota().reset_at == datetime(2026, 4, 28, 15, 30, tzinfo=timezone.utc)
    assert quota(resetAt="2026-04-28T17:30:00+02:00").reset_at == datetime(2026, 4, 28, 15, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "value", [None, "soon", "", 1234, "2026-13-45T00:00:00Z", {"at": 1}, "9999-12-31T23:00:00-05:00", "x" * 10**6]
)
def test_unusable_reset_at_means_unknown_with_a_warning(value, caplog):
    caplog.set_level(logging.WARNING)
    assert quota(resetAt=value).reset_at is None
    assert "resetAt" in caplog.text


def test_missing_reset_at_means_unknown():
    data = dict(BASE)
    del data["resetAt"]
    assert ProspectingQuota.model_validate(data).reset_at is None


def test_naive_reset_at_is_read_as_utc():
    assert quota(resetAt="2026-04-28T15:30:00").reset_at == datetime(2026, 4, 28, 15, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "changes", [{"used": -1}, {"remaining": "22"}, {"exhausted": "no"}, {"limit": 2**63}, {"listType": ""}]
)
def test_other_fields_are_strict(changes):
    with pytest.raises(ValueError, match=next(iter(changes))):
        quota(**changes)


def test_quota_is_frozen():
    with pytest.raises(ValueError, match="frozen"):
        quota().used = 1  # type: ignore[misc]


USAGE = {
    "mmyyyy": "122024",
    "apiQuota": 1500,
    "sponsoredJobsSpendAmount": Decimal("3000.123456789012345678901"),
    "currencyCode": "USD",
    "apiUsage": [{"requestsCount": 1000}, {"requestsCount": 7, "endpoint": "x"}],
    "futureField": True,
}


def usage(**changes):
    data = parse_payload(ApiQuotaUsageData, {**USAGE, **changes}, api="Indeed", what="GET /ads/v1/apiquotausage")
    return ApiQuotaUsage.from_api(data, employer_id="e")


def test_usage_record():
    usage_ = usage()
    assert usage_.requests_count == 1007 and usage_.month == "122024" and usage_.month_start.isoformat() == "2024-12-01"
    assert usage_.spend_amount == Decimal("3000.123456789012345678901")
    dumped = usage_.model_dump(mode="json")
    assert dumped["spend_amount"] == "3000.123456789012345678901"
    assert dumped["api_usage"][1] == {"requestsCount": 7, "endpoint": "x"}


def test_integer_spend_is_exact():
    assert usage(sponsoredJobsSpendAmount=3000).spend_amount == Decimal(3000)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"sponsoredJobsSpendAmount": 0.1}, "binary float"),
        ({"sponsoredJobsSpendAmount": Decimal("NaN")}, "sponsoredJobsSpendAmount"),
        ({"sponsoredJobsSpendAmount": Decimal("-5")}, "greater than or equal to 0"),
        ({"mmyyyy": "132024"}, "mmyyyy"),
        ({"apiUsage": [{"requestsCount": 2**62}, {"requestsCount": 2**62}, {"requestsCount": 2**62}]}, "BIGINT"),
        # Implausible numbers: 13 bytes of JSON that would print as 100 MB, or a count of 40 digits.
        ({"sponsoredJobsSpendAmount": Decimal("1e99999999")}, "sponsoredJobsSpendAmount: "),
        ({"sponsoredJobsSpendAmount": Decimal("1e-99999999")}, "sponsoredJobsSpendAmount: .*decimal places"),
        ({"sponsoredJobsSpendAmount": Decimal("9" * 36)}, "36 digits before the decimal point, more than 35"),
        ({"apiQuota": Decimal("1" * 41)}, "apiQuota: Input should be a valid integer"),
        ({"mmyyyy": "120000"}, "mmyyyy: Value error"),
    ],
)
def test_bad_usage_is_refused_naming_the_field_and_permanently(changes, problem):
    with pytest.raises(UnexpectedResponseError, match=problem) as caught:
        usage(**changes)
    assert caught.value.permanent and len(str(caught.value)) < 1000


@pytest.mark.parametrize(
    ("expires_in", "token", "problem"),
    [(2**1100, "t", "expires_in"), (3600, "tok en", "access_token"), (3600, "tok\u00e9n", "access_token")],
)
def test_implausible_tokens_are_refused_naming_the_field(expires_in, token, problem):
    answer = {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
    with pytest.raises(UnexpectedResponseError, match=problem):
        parse_payload(AccessToken, answer, api="Indeed", what="POST /oauth/v2/tokens")
