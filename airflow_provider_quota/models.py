"""
Pydantic models of the Sonarly and Indeed API payloads.

Be liberal in what is accepted (unknown fields are ignored), strict in what is used:
counts are non-negative integers, money is an exact :class:`~decimal.Decimal`, and a
missing field raises an error that names it. ``resetAt`` is the one lenient field
(an unparsable value means "reset time unknown").
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import (
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
)
from pydantic.alias_generators import to_camel

from airflow_provider_quota.exceptions import UnexpectedResponseError
from airflow_provider_quota.months import format_month

log = logging.getLogger(__name__)

#: The largest count we accept: it must fit a SQL BIGINT.
MAX_COUNT = 2**63 - 1

Count = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]
Text = Annotated[str, Field(strict=True, min_length=1)]

M = TypeVar("M", bound=BaseModel)


class _Payload(BaseModel):
    """An API payload: camelCase on the wire, unknown fields ignored, immutable."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=AliasGenerator(validation_alias=to_camel),
        validate_by_name=True,
        validate_by_alias=True,
    )


def parse_payload(
    model: type[M], data: Any, *, api: str, what: str, status: int | None = None, trace_id: str | None = None
) -> M:
    """
    Validate ``data`` as ``model``, turning a validation failure into an error that names the fields.

    :param model: the pydantic model to validate against.
    :param data: the decoded JSON.
    :param api: "Sonarly" or "Indeed", for the message.
    :param what: which part of the answer this is, e.g. "the quota in GET /v1/accounts/{id}/prospecting/quota".
    :param status: HTTP status of the answer.
    :param trace_id: the answer's traceId, if any.
    :raise UnexpectedResponseError: when ``data`` does not fit ``model``.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise UnexpectedResponseError(
            f"{what} is not what the API documents: {problems}",
            api=api,
            status=status,
            code="UNEXPECTED_RESPONSE",
            trace_id=trace_id,
        ) from None


# --------------------------------------------------------------------------- Sonarly

_AWARE_DATETIME = TypeAdapter(datetime)


class SonarlyErrorBody(_Payload):
    """The ``error`` object of a Sonarly envelope."""

    code: str | None = None
    message: str | None = None
    details: Any = None


class SonarlyEnvelope(_Payload):
    """``{"success", "data", "error", "traceId"}``, the wrapper of every Sonarly answer."""

    success: StrictBool
    data: Any = None
    error: SonarlyErrorBody | None = None
    trace_id: str | None = None


class AccountGroup(_Payload):
    """An account group the API key can see (``GET /v1/accounts``)."""

    id: Text
    name: str | None = None


class AccountGroupList(_Payload):
    """The ``data`` of ``GET /v1/accounts``."""

    items: list[AccountGroup]


class ProspectingQuota(_Payload):
    """
    Prospecting quota of one account group, as returned by ``GET /v1/accounts/{id}/prospecting/quota``.

    ``model_dump(mode="json")`` is its XCom form. Which field decides: see :meth:`is_usable`.
    """

    list_type: Text
    quota_type: Text
    used: Count
    limit: Count
    remaining: Count
    reset_at: datetime | None = None
    exhausted: StrictBool
    trace_id: str | None = None

    @field_validator("reset_at", mode="before")
    @classmethod
    def _parse_reset_at_leniently(cls, value: Any) -> datetime | None:
        if value is None:
            log.warning("Sonarly quota has no resetAt: reset time unknown")
            return None
        if not isinstance(value, (str, datetime)):
            log.warning("Sonarly quota resetAt %r is not a date-time: reset time unknown", value)
            return None
        try:
            parsed = _AWARE_DATETIME.validate_python(value)
        except ValidationError:
            log.warning("Sonarly quota resetAt %r is unparsable: reset time unknown", value)
            return None
        if parsed.tzinfo is None:
            log.warning("Sonarly quota resetAt %r has no time zone: read as UTC", value)
            return parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)

    def is_usable(self, min_remaining: int = 1) -> bool:
        """
        Whether a prospecting job may start now.

        The rule: ``exhausted`` is authoritative and ``remaining`` must cover the job.
        The quota is usable only when ``exhausted`` is false **and**
        ``remaining >= min_remaining``. ``exhausted`` true always means wait, whatever
        ``remaining`` says (the API's own example shows ``remaining`` 25 with ``exhausted`` true).

        :param min_remaining: the smallest ``remaining`` the job needs.
        """
        return not self.exhausted and self.remaining >= min_remaining


# --------------------------------------------------------------------------- Indeed


class IndeedErrorItem(_Payload):
    """One entry of ``meta.errors``."""

    type: str | None = None
    description: str | None = None


class IndeedMeta(_Payload):
    """The ``meta`` object of an Indeed envelope."""

    status: int | None = None
    errors: list[IndeedErrorItem] | None = None
    root_location: str | None = None


class IndeedEnvelope(_Payload):
    """``{"meta", "data"}``, the wrapper of every Indeed Sponsored Jobs API answer."""

    meta: IndeedMeta | None = None
    data: Any = None


class AccessToken(BaseModel):
    """An OAuth 2 access token from ``POST /oauth/v2/tokens``; the token never shows in a repr."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    access_token: SecretStr = Field(min_length=1)
    token_type: Text
    expires_in: Annotated[int, Field(strict=True, gt=0)]
    scope: str = ""

    @field_validator("token_type")
    @classmethod
    def _bearer_only(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError(f"token_type is {value!r}, expected 'Bearer'")
        return value


class ApiUsageRecord(_Payload):
    """One entry of ``apiUsage``."""

    requests_count: Count


class _ApiQuotaUsageData(_Payload):
    mmyyyy: Annotated[str, Field(strict=True, pattern=r"^(0[1-9]|1[0-2])\d{4}$")]
    api_quota: Count
    sponsored_jobs_spend_amount: Annotated[Decimal, Field(allow_inf_nan=False, ge=0)]
    currency_code: Annotated[str, Field(strict=True, pattern=r"^[A-Z]{3}$")]
    api_usage: list[Annotated[dict[str, Any], Field()]]

    @field_validator("sponsored_jobs_spend_amount", mode="before")
    @classmethod
    def _no_binary_float(cls, value: Any) -> Any:
        # A float here means the payload went through a binary float somewhere: refuse it.
        if isinstance(value, (bool, float)):
            raise ValueError("must be an exact decimal number, not a binary float or boolean")
        return value

    @field_validator("api_usage")
    @classmethod
    def _records_have_counts(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for record in value:
            ApiUsageRecord.model_validate(record)
        return value


def plain_decimal(value: Decimal) -> str:
    """``value`` as exact text in plain notation: ``1.5E+3`` is ``"1500"``, ``1E-18`` is ``"0.000000000000000001"``."""
    return format(value, "f")


class ApiQuotaUsage(BaseModel):
    """
    An employer's Sponsored Jobs API usage, quota and spend for one month.

    ``spend_amount`` is an exact :class:`~decimal.Decimal`; ``model_dump(mode="json")``
    writes it as a decimal string in plain notation (``"1500"`` for an API's ``1.5E3``,
    never a float) and is the XCom form.
    """

    model_config = ConfigDict(frozen=True)

    @field_serializer("spend_amount", when_used="json")
    def _spend_in_plain_notation(self, spend: Decimal) -> str:
        return plain_decimal(spend)

    employer_id: str | None
    month: str
    month_start: date
    api_quota: int
    requests_count: int
    spend_amount: Decimal
    currency_code: str
    api_usage: list[dict[str, Any]]

    @classmethod
    def from_api(cls, data: Any, *, employer_id: str | None, status: int | None = None) -> ApiQuotaUsage:
        """
        Build the record from the ``data`` of ``GET /v1/apiquotausage``.

        :param data: the decoded ``data`` object.
        :param employer_id: the employer the token represents.
        :param status: HTTP status, for error messages.
        :raise UnexpectedResponseError: naming each field that is missing or wrong.
        """
        raw = parse_payload(_ApiQuotaUsageData, data, api="Indeed", what="data of GET /v1/apiquotausage", status=status)
        requests_count = sum(ApiUsageRecord.model_validate(r).requests_count for r in raw.api_usage)
        if requests_count > MAX_COUNT:
            raise UnexpectedResponseError(
                f"data.apiUsage requestsCount adds up to {requests_count}, more than fits a BIGINT",
                api="Indeed",
                status=status,
                code="UNEXPECTED_RESPONSE",
            )
        month_start = date(int(raw.mmyyyy[2:]), int(raw.mmyyyy[:2]), 1)
        return cls(
            employer_id=employer_id,
            month=format_month(month_start),
            month_start=month_start,
            api_quota=raw.api_quota,
            requests_count=requests_count,
            spend_amount=raw.sponsored_jobs_spend_amount,
            currency_code=raw.currency_code,
            api_usage=raw.api_usage,
        )
