"""
Pydantic models of the Sonarly and Indeed API payloads: each answer is parsed once, here.

Be liberal in what is accepted (unknown fields are ignored), strict in what is used: counts
are non-negative integers that fit a SQL BIGINT, money is an exact :class:`~decimal.Decimal`
with at most 35 digits before the point and 30 after (what every supported warehouse column
holds), and a field out of bounds raises an error that names it, before anything is formatted
or stored. ``resetAt`` is the one lenient field: an unreadable value means "reset time unknown".
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from airflow_provider_quota.exceptions import UnexpectedResponseError
from airflow_provider_quota.utils.limits import (
    MONEY_INTEGER_DIGITS,
    MONEY_PLACES,
    decimal_overflow,
    without_zeros_past,
)

log = logging.getLogger(__name__)

#: The largest count accepted: it must fit a SQL BIGINT.
MAX_COUNT = 2**63 - 1
#: The longest access-token lifetime accepted, in seconds (a year; Indeed's are an hour).
MAX_TOKEN_LIFETIME = 366 * 24 * 3600
#: Text from an API is cut to this many characters before it reaches a message.
MAX_TEXT = 500

DataT = TypeVar("DataT")
M = TypeVar("M", bound=BaseModel)


def _exact_money(value: Any) -> Any:
    # A float here means the payload went through a binary float somewhere: refuse it.
    if isinstance(value, (bool, float)):
        raise ValueError("must be an exact decimal number, not a binary float or boolean")
    return value


def _bounded_money(value: Decimal) -> Decimal:
    problem = decimal_overflow(value, integer_digits=MONEY_INTEGER_DIGITS, places=MONEY_PLACES)
    if problem:
        raise ValueError(f"is not a plausible amount: it {problem}")
    return without_zeros_past(value, MONEY_PLACES)


def _clip(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)[: MAX_TEXT + 1]
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


Count = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]
Money = Annotated[
    Decimal, BeforeValidator(_exact_money), Field(allow_inf_nan=False, ge=0), AfterValidator(_bounded_money)
]
Text = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_TEXT)]
#: Text from an error answer: anything, cut short, never refused (an error must stay readable).
ErrorText = Annotated[str | None, BeforeValidator(_clip)]


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

    Values never reach the message (they may be huge, or quote something secret).

    :param model: the pydantic model to validate against.
    :param data: the decoded JSON.
    :param api: "Sonarly" or "Indeed", for the message.
    :param what: which answer this is, e.g. "GET /v1/accounts/{id}/prospecting/quota".
    :param status: HTTP status of the answer.
    :param trace_id: the answer's traceId, if any.
    :raise UnexpectedResponseError: when ``data`` does not fit ``model``; permanent: the same
        request would get the same answer.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False, include_context=False)[:10]
        )
        raise UnexpectedResponseError(
            f"the answer of {what} is not what the API documents: {_clip(problems)}",
            api=api,
            status=status,
            code="UNEXPECTED_RESPONSE",
            trace_id=trace_id,
            permanent=True,
        ) from None


def error_details(model: type[BaseModel], payload: Any) -> tuple[str | None, str | None, str | None]:
    """``(code, message, trace_id)`` of an error answer read as ``model``, or Nones when it is not one."""
    try:
        envelope = model.model_validate(payload)
    except ValidationError:
        return None, None, None
    return envelope.error_details()  # type: ignore[attr-defined, no-any-return]


# --------------------------------------------------------------------------- Sonarly


class SonarlyError(_Payload):
    """The ``error`` object of a Sonarly envelope."""

    code: ErrorText = None
    message: ErrorText = None


class SonarlyEnvelope(_Payload, Generic[DataT]):
    """``{"success", "data", "error", "traceId"}``, the wrapper of every Sonarly answer."""

    success: StrictBool
    data: DataT = Field(default=None, validate_default=True)
    error: SonarlyError | None = None
    trace_id: ErrorText = None

    def error_details(self) -> tuple[str | None, str | None, str | None]:
        error = self.error or SonarlyError()
        return error.code, error.message, self.trace_id


class AccountGroup(_Payload):
    """An account group the API key can see (``GET /v1/accounts``)."""

    id: Text
    name: str | None = None


class AccountGroupList(_Payload):
    """The ``data`` of ``GET /v1/accounts``."""

    items: list[AccountGroup]


_AWARE_DATETIME = TypeAdapter(datetime)


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
        try:
            parsed = _AWARE_DATETIME.validate_python(value if isinstance(value, (str, datetime)) else None)
            if parsed.tzinfo is None:
                log.warning("Sonarly quota resetAt has no time zone: read as UTC")
                return parsed.replace(tzinfo=timezone.utc)
            return parsed.astimezone(timezone.utc)
        except (ValidationError, OverflowError, ValueError):  # OverflowError: 9999-12-31T23:00:00-05:00
            log.warning("Sonarly quota resetAt %.40r is not a readable date-time: reset time unknown", value)
            return None

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

    type: ErrorText = None
    description: ErrorText = None


class IndeedMeta(_Payload):
    """The ``meta`` object of an Indeed envelope."""

    errors: list[IndeedErrorItem] | None = None


class IndeedEnvelope(_Payload, Generic[DataT]):
    """
    ``{"meta", "data"}``, the wrapper of every Indeed Sponsored Jobs API answer.

    The token endpoint answers errors the OAuth 2 way instead (``error``, ``error_description``).
    """

    meta: IndeedMeta | None = None
    data: DataT = Field(default=None, validate_default=True)
    error: ErrorText = None
    error_description: ErrorText = Field(default=None, validation_alias="error_description")

    def error_details(self) -> tuple[str | None, str | None, str | None]:
        errors = (self.meta.errors if self.meta else None) or []
        if len(errors) == 1:
            return errors[0].type, errors[0].description, None
        if errors:
            return errors[0].type, _clip("; ".join(f"{e.type}: {e.description}" for e in errors)), None
        return self.error, self.error_description or self.error, None


class AccessToken(BaseModel):
    """An OAuth 2 access token from ``POST /oauth/v2/tokens``; the token never shows in a repr."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    access_token: Annotated[SecretStr, Field(min_length=1, max_length=8192)]
    token_type: Text
    expires_in: Annotated[int, Field(strict=True, gt=0, le=MAX_TOKEN_LIFETIME)]
    scope: Annotated[str, Field(max_length=MAX_TEXT)] = ""

    @field_validator("access_token")
    @classmethod
    def _sendable(cls, value: SecretStr) -> SecretStr:
        if not all("!" <= char <= "~" for char in value.get_secret_value()):
            raise ValueError("the token is not printable ASCII without spaces, so it cannot be sent in a header")
        return value

    @field_validator("token_type")
    @classmethod
    def _bearer_only(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("token_type is not 'Bearer'")
        return value


class ApiUsageRecord(_Payload):
    """One entry of ``apiUsage``."""

    requests_count: Count


def _month_of(mmyyyy: str) -> str:
    date(int(mmyyyy[2:]), int(mmyyyy[:2]), 1)  # "120000" is no month: year 0 does not exist
    return mmyyyy


class ApiQuotaUsageData(_Payload):
    """The ``data`` of ``GET /ads/v1/apiquotausage``, validated once."""

    mmyyyy: Annotated[str, Field(strict=True, pattern=r"^(0[1-9]|1[0-2])\d{4}$"), AfterValidator(_month_of)]
    api_quota: Count
    sponsored_jobs_spend_amount: Money
    currency_code: Annotated[str, Field(strict=True, pattern=r"^[A-Z]{3}$")]
    api_usage: list[dict[str, Any]]
    #: ``apiUsage``'s ``requestsCount`` added up (each record validated once, here).
    requests_count: int = 0

    @model_validator(mode="after")
    def _add_up_requests(self) -> ApiQuotaUsageData:
        total = sum(ApiUsageRecord.model_validate(record).requests_count for record in self.api_usage)
        if total > MAX_COUNT:
            raise ValueError(f"apiUsage requestsCount adds up to {total}, more than fits a BIGINT")
        object.__setattr__(self, "requests_count", total)
        return self


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

    employer_id: str | None
    month: str
    month_start: date
    api_quota: int
    requests_count: int
    spend_amount: Decimal
    currency_code: str
    api_usage: list[dict[str, Any]]

    @field_serializer("spend_amount", when_used="json")
    def _spend_in_plain_notation(self, spend: Decimal) -> str:
        return plain_decimal(spend)

    @classmethod
    def from_api(cls, data: ApiQuotaUsageData, *, employer_id: str | None) -> ApiQuotaUsage:
        """
        Build the record from the validated ``data`` of ``GET /ads/v1/apiquotausage``.

        :param data: the validated ``data`` object.
        :param employer_id: the employer the token represents.
        """
        return cls(
            employer_id=employer_id,
            month=data.mmyyyy,
            month_start=date(int(data.mmyyyy[2:]), int(data.mmyyyy[:2]), 1),
            api_quota=data.api_quota,
            requests_count=data.requests_count,
            spend_amount=data.sponsored_jobs_spend_amount,
            currency_code=data.currency_code,
            api_usage=data.api_usage,
        )
