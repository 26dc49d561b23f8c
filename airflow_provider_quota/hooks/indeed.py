"""Hook for the Indeed Sponsored Jobs API: OAuth 2 client credentials and monthly API quota usage."""

from __future__ import annotations

import threading
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
    clip_text,
    validate_id,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_quota.models import AccessToken, ApiQuotaUsage

DEFAULT_SCOPE = "employer.advertising.account.read"
TOKEN_PATH = "/oauth/v2/tokens"  # noqa: S105 (a path, not a password)
QUOTA_USAGE_PATH = "/ads/v1/apiquotausage"


@dataclass
class _CachedToken:
    value: str = field(repr=False)
    scope: str
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at


# Tokens are shared by every IndeedHook in the process, per (connection, host, client, employer, scope).
_TOKENS: dict[tuple[str, str, str, str | None, str], _CachedToken] = {}
_TOKEN_LOCKS: dict[tuple[str, str, str, str | None, str], threading.Lock] = {}
_TOKEN_LOCKS_GUARD = threading.Lock()


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

    :param indeed_conn_id: the Airflow connection id.
    :param employer_id: the employer the access token represents; defaults to the connection's extra.
    :param kwargs: timeouts and retry settings: ``connect_timeout``, ``read_timeout``,
        ``max_attempts``, ``backoff_initial``, ``backoff_max``, ``max_retry_wait``.
    """

    conn_name_attr = "indeed_conn_id"
    default_conn_name = "indeed_default"
    conn_type = "indeed"
    hook_name = "Indeed Sponsored Jobs API"
    api_name = "Indeed"
    default_host = "https://apis.indeed.com"

    def __init__(self, indeed_conn_id: str = default_conn_name, employer_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(indeed_conn_id, **kwargs)
        self.indeed_conn_id = indeed_conn_id
        self._employer_id_arg = employer_id

    # ------------------------------------------------------------------ base hooks

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

    def _is_error_payload(self, payload: dict[str, Any]) -> bool:
        meta = payload.get("meta")
        return "data" in payload and payload["data"] is None and isinstance(meta, dict) and bool(meta.get("errors"))

    def _error_details(self, payload: dict[str, Any] | None) -> tuple[str | None, str | None, str | None]:
        if payload is None:
            return None, None, None
        meta = payload.get("meta")
        errors = meta.get("errors") if isinstance(meta, dict) else None
        if isinstance(errors, list) and errors:
            items = [error for error in errors if isinstance(error, dict)]
            code = clip_text(items[0].get("type")) if items else None
            if len(items) == 1:
                message = str(items[0].get("description"))
            else:
                message = "; ".join(f"{error.get('type')}: {error.get('description')}" for error in items)
            return code, clip_text(message), None
        if isinstance(payload.get("error"), str):  # RFC 6749 error from the token endpoint
            return clip_text(payload["error"]), clip_text(payload.get("error_description") or payload["error"]), None
        return None, None, None

    # ------------------------------------------------------------------ settings

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

    def _token_key(self) -> tuple[str, str, str, str | None, str]:
        return (self.conn_id, self.base_url, self.connection.login or "", self.employer_id, self.scope)

    def _request_token(self) -> AccessToken:
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
        response = self.request_json("POST", TOKEN_PATH, form=form, headers={"Accept": "application/json"})
        token = parse_payload(
            AccessToken,
            response.payload,
            api=self.api_name,
            what=f"the answer of POST {TOKEN_PATH}",
            status=response.status,
        )
        mask_secret(token.access_token.get_secret_value())
        return token

    def _access_token(self, *, stale: str | None = None) -> str:
        """
        Return a fresh access token for this hook's employer, from the process-wide cache when possible.

        :param stale: a token the API just refused; it is renewed unless another caller already did.
        """
        key = self._token_key()
        with _TOKEN_LOCKS_GUARD:
            lock = _TOKEN_LOCKS.setdefault(key, threading.Lock())
        with lock:  # one token request per key, however many threads ask at once
            cached = _TOKENS.get(key)
            if cached is not None and cached.value != stale and cached.fresh(time.time()):
                return cached.value
            token = self._request_token()
            _TOKENS[key] = _CachedToken(
                value=token.access_token.get_secret_value(),
                scope=token.scope,
                expires_at=time.time() + token.expires_in - _refresh_margin(token.expires_in),
            )
            self.log.info(
                "Obtained an Indeed access token for employer %s (scope %r, valid %d s)",
                self.employer_id or "(none)",
                token.scope,
                token.expires_in,
            )
            return _TOKENS[key].value

    def _get_with_token(self, path: str, params: dict[str, Any]) -> JsonResponse:
        token = self._access_token()
        try:
            return self.request_json("GET", path, params=params, headers=_bearer(token))
        except QuotaApiError as exc:
            if exc.status != 401:
                raise
            self.log.info("Indeed answered 401 %s to GET %s; renewing the access token once", exc.code, path)
        token = self._access_token(stale=token)
        return self.request_json("GET", path, params=params, headers=_bearer(token))

    # ------------------------------------------------------------------ API

    def get_api_quota_usage(self, month: str | date | None = None) -> ApiQuotaUsage:
        """
        Get the employer's API usage, quota and spend for a month (``GET /ads/v1/apiquotausage``).

        The month is validated before anything is sent.

        :param month: ``"MMyyyy"``, ``"YYYY-MM"``, a date or datetime; None for the current month
            (``monthYear`` is then omitted and the API picks its current month).
        :raise InvalidMonthError: malformed, before 12/2024 or in the future; no request is made.
        :raise QuotaApiError: on an error answer.
        """
        from airflow_provider_quota.models import ApiQuotaUsage, IndeedEnvelope, parse_payload
        from airflow_provider_quota.months import format_month, parse_month

        month_start = None if month is None else parse_month(month)
        if self.employer_id is None:
            raise ConnectionConfigError(
                "The Indeed apiquotausage endpoint needs a token that represents an employer: pass "
                f"employer_id, or set the extra 'employer_id' of connection {self.conn_id!r}"
            )
        params = {"monthYear": None if month_start is None else format_month(month_start)}
        response = self._get_with_token(QUOTA_USAGE_PATH, params)
        what = f"the answer of GET {QUOTA_USAGE_PATH}"
        envelope = parse_payload(IndeedEnvelope, response.payload, api=self.api_name, what=what, status=response.status)
        if envelope.data is None:
            raise UnexpectedResponseError(
                f"{what} has no data", api=self.api_name, status=response.status, code="UNEXPECTED_RESPONSE"
            )
        usage = ApiQuotaUsage.from_api(envelope.data, employer_id=self.employer_id, status=response.status)
        if month_start is not None and usage.month_start != month_start:
            raise UnexpectedResponseError(
                f"asked for month {format_month(month_start)} but the API answered month {usage.month}",
                api=self.api_name,
                status=response.status,
                code="UNEXPECTED_RESPONSE",
            )
        return usage

    def test_connection(self) -> tuple[bool, str]:
        """Obtain a new access token and report its scope and lifetime; the Sponsored Jobs API is not called."""
        try:
            token = self._request_token()
        except Exception as exc:
            return False, str(exc)
        employer = f"employer {self.employer_id}" if self.employer_id else "no employer"
        return True, (
            f"Obtained an access token from {self.base_url} for {employer}, scope {token.scope!r}, "
            f"valid for {token.expires_in} s (no Sponsored Jobs API call was made)"
        )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}
