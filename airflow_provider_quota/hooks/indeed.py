"""Hook for the Indeed Sponsored Jobs API: OAuth 2 client credentials and monthly API quota usage."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_quota.exceptions import ConnectionConfigError, QuotaApiError, UnexpectedResponseError
from airflow_provider_quota.hooks.base import (
    JsonResponse,
    QuotaApiHook,
    check_credential_text,
    loop_local,
    validate_id,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_quota.models import AccessToken, ApiQuotaUsage

DEFAULT_SCOPE = "employer.advertising.account.read"
TOKEN_PATH = "/oauth/v2/tokens"  # noqa: S105 (a path, not a password)
QUOTA_USAGE_PATH = "/ads/v1/apiquotausage"

TokenKey = tuple[str, str, str, "str | None", str]


@dataclass
class _CachedToken:
    value: str = field(repr=False)
    expires_at: float


# Tokens are shared by every IndeedHook in the process, per (connection, host, client, employer, scope).
_TOKENS: dict[TokenKey, _CachedToken] = {}
# One token request at a time per key and event loop (every synchronous call shares one loop).
_TOKEN_LOCKS: dict[asyncio.AbstractEventLoop, dict[TokenKey, asyncio.Lock]] = {}


def _refresh_margin(expires_in: int) -> float:
    """Renew a token this many seconds before it expires: a minute, or a tenth of a short lifetime."""
    return min(60.0, expires_in / 10)


class IndeedHook(QuotaApiHook):
    """
    Interact with the Indeed Sponsored Jobs API with an OAuth 2 client-credentials app.

    The connection (type ``indeed``) holds the client id in its login field and the client
    secret in its password field; the host is optional (``https://apis.indeed.com``);
    extras: ``employer_id`` (the employer the token represents when the hook is given
    none) and ``scope`` (default ``employer.advertising.account.read``).

    The access token is requested once per (connection, employer) and reused by every call
    in the process until shortly before it expires; an API 401 renews it once and retries
    that call once.

    .. seealso::
        :class:`~airflow_provider_quota.hooks.base.HttpSettings` for timeouts, limits and retries.

    :param indeed_conn_id: the Airflow connection id.
    :param employer_id: the employer the access token represents; defaults to the connection's extra.
    :param settings: :class:`~airflow_provider_quota.hooks.base.HttpSettings` as keyword arguments.
    """

    conn_name_attr = "indeed_conn_id"
    default_conn_name = "indeed_default"
    conn_type = "indeed"
    hook_name = "Indeed Sponsored Jobs API"
    api_name = "Indeed"
    default_host = "https://apis.indeed.com"

    def __init__(
        self, indeed_conn_id: str = default_conn_name, employer_id: str | None = None, **settings: Any
    ) -> None:
        super().__init__(indeed_conn_id, **settings)
        self.indeed_conn_id = indeed_conn_id
        self._employer_id_arg = employer_id

    def _check_credentials(self, conn: Connection) -> None:
        missing = [
            name
            for name, value in (("client id (login)", conn.login), ("client secret (password)", conn.password))
            if not value
        ]
        if missing:
            raise ConnectionConfigError(f"Connection {self.conn_id!r} has no {' and no '.join(missing)}")
        check_credential_text(conn.login, what="client id (login)", conn_id=self.conn_id)
        check_credential_text(conn.password, what="client secret (password)", conn_id=self.conn_id)

    def _secrets(self) -> list[str]:
        cached = _TOKENS.get(self._token_key())
        return [self.connection.password or "", cached.value if cached else ""]

    def _is_error_payload(self, payload: dict[str, Any]) -> bool:
        meta = payload.get("meta")
        return "data" in payload and payload["data"] is None and isinstance(meta, dict) and bool(meta.get("errors"))

    def _error_details(self, payload: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
        from airflow_provider_quota.models import IndeedEnvelope, error_details

        return error_details(IndeedEnvelope[Any], payload)

    @cached_property
    def employer_id(self) -> str | None:
        """The employer the access token represents: the argument, else the connection's extra."""
        if self._employer_id_arg is not None:  # only None falls back: an empty string is refused
            return validate_id(self._employer_id_arg, name="employer_id")
        from_extra = self._extra_str("employer_id")
        return None if from_extra is None else validate_id(from_extra, name=f"extra employer_id of {self.conn_id!r}")

    @cached_property
    def scope(self) -> str:
        """OAuth scopes requested, space separated."""
        return self._extra_str("scope") or DEFAULT_SCOPE

    # ------------------------------------------------------------------ tokens

    def _token_key(self) -> TokenKey:
        return (self.conn_id, self.base_url, self.connection.login or "", self.employer_id, self.scope)

    async def _arequest_token(self) -> AccessToken:
        from airflow.sdk.log import mask_secret

        from airflow_provider_quota.models import AccessToken, parse_payload

        form = {
            "client_id": self.connection.login or "",
            "client_secret": self.connection.password or "",
            "grant_type": "client_credentials",
            "scope": self.scope,
        }
        if self.employer_id:
            form["employer"] = self.employer_id
        response = await self.arequest_json("POST", TOKEN_PATH, form=form)
        token = parse_payload(
            AccessToken, response.payload, api=self.api_name, what=f"POST {TOKEN_PATH}", status=response.status
        )
        mask_secret(token.access_token.get_secret_value())
        return token

    async def _aaccess_token(self, *, stale: str | None = None) -> str:
        """
        Return a fresh access token for this hook's employer, from the process-wide cache when possible.

        :param stale: a token the API just refused; it is renewed unless another caller already did.
        """
        key = self._token_key()
        locks = loop_local(_TOKEN_LOCKS, dict)
        async with locks.setdefault(key, asyncio.Lock()):  # one token request per key, however many ask at once
            cached = _TOKENS.get(key)
            if cached is not None and cached.value != stale and time.time() < cached.expires_at:
                return cached.value
            token = await self._arequest_token()
            value = token.access_token.get_secret_value()
            _TOKENS[key] = _CachedToken(value, time.time() + token.expires_in - _refresh_margin(token.expires_in))
            self.log.info(
                "Obtained an Indeed access token for employer %s (scope %r, valid %d s)",
                self.employer_id or "(none)",
                token.scope,
                token.expires_in,
            )
            return value

    async def _aget_with_token(self, path: str, params: dict[str, Any]) -> JsonResponse:
        token = await self._aaccess_token()
        try:
            return await self.arequest_json("GET", path, params=params, token=token)
        except QuotaApiError as exc:
            if exc.status != 401:
                raise
            self.log.info("Indeed answered 401 %s to GET %s; renewing the access token once", exc.code, path)
        token = await self._aaccess_token(stale=token)
        return await self.arequest_json("GET", path, params=params, token=token)

    # ------------------------------------------------------------------ API

    async def aget_api_quota_usage(self, month: str | date | None = None) -> ApiQuotaUsage:
        """Asynchronous :meth:`get_api_quota_usage`, for triggers."""
        from airflow_provider_quota.models import ApiQuotaUsage, ApiQuotaUsageData, IndeedEnvelope, parse_payload
        from airflow_provider_quota.utils.months import format_month, parse_month

        month_start = None if month is None else parse_month(month)
        await self.aget_checked_connection()
        if self.employer_id is None:
            raise ConnectionConfigError(
                "The Indeed apiquotausage endpoint needs a token that represents an employer: pass "
                f"employer_id, or set the extra 'employer_id' of connection {self.conn_id!r}"
            )
        response = await self._aget_with_token(
            QUOTA_USAGE_PATH, {"monthYear": None if month_start is None else format_month(month_start)}
        )
        envelope = parse_payload(
            IndeedEnvelope[ApiQuotaUsageData],
            response.payload,
            api=self.api_name,
            what=f"GET {QUOTA_USAGE_PATH}",
            status=response.status,
        )
        usage = ApiQuotaUsage.from_api(envelope.data, employer_id=self.employer_id)
        if month_start is not None and usage.month_start != month_start:
            raise UnexpectedResponseError(
                f"asked for month {format_month(month_start)} but the API answered month {usage.month}",
                api=self.api_name,
                status=response.status,
                code="UNEXPECTED_RESPONSE",
                permanent=True,
            )
        return usage

    def get_api_quota_usage(self, month: str | date | None = None) -> ApiQuotaUsage:
        """
        Get the employer's API usage, quota and spend for a month (``GET /ads/v1/apiquotausage``).

        The month is validated before anything is sent.

        :param month: ``"MMyyyy"``, ``"YYYY-MM"``, a date or datetime; None for the current month
            (``monthYear`` is then omitted and the API picks its current month).
        :raise InvalidMonthError: malformed, before 12/2024 or in the future; no request is made.
        :raise QuotaApiError: on an error answer.
        """
        return self.run_sync(self.aget_api_quota_usage(month))

    def test_connection(self) -> tuple[bool, str]:
        """Obtain a new access token and report its scope and lifetime; the Sponsored Jobs API is not called."""
        try:
            token = self.run_sync(self._arequest_token())
        except Exception as exc:
            return False, str(exc)
        employer = f"employer {self.employer_id}" if self.employer_id else "no employer"
        return True, (
            f"Obtained an access token from {self.base_url} for {employer}, scope {token.scope!r}, "
            f"valid for {token.expires_in} s (no Sponsored Jobs API call was made)"
        )
