"""Hook for the Sonarly public API: account groups and the prospecting quota."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_quota.exceptions import ConnectionConfigError, InvalidParameterError, UnexpectedResponseError
from airflow_provider_quota.hooks.base import (
    JsonResponse,
    QuotaApiHook,
    check_credential_text,
    clip_text,
    quote_path_segment,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_quota.models import AccountGroup, ProspectingQuota


class SonarlyHook(QuotaApiHook):
    """
    Interact with the Sonarly public API, authenticated with an API key.

    The connection (type ``sonarly``) holds the API key in its password field, sent as
    ``Authorization: Bearer <key>``; the host is optional (``https://api.sonarly.io``);
    the extra ``account_group_id`` is the account group used when a call names none.

    .. seealso::
        :class:`~airflow_provider_quota.hooks.base.QuotaApiHook` for timeouts and retries.

    :param sonarly_conn_id: the Airflow connection id.
    :param kwargs: timeouts and retry settings: ``connect_timeout``, ``read_timeout``,
        ``max_attempts``, ``backoff_initial``, ``backoff_max``, ``max_retry_wait``.
    """

    conn_name_attr = "sonarly_conn_id"
    default_conn_name = "sonarly_default"
    conn_type = "sonarly"
    hook_name = "Sonarly"
    api_name = "Sonarly"
    default_host = "https://api.sonarly.io"

    def __init__(self, sonarly_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(sonarly_conn_id, **kwargs)
        self.sonarly_conn_id = sonarly_conn_id

    # ------------------------------------------------------------------ base hooks

    def _check_credentials(self, conn: Connection) -> None:
        if not conn.password:
            raise ConnectionConfigError(
                f"Connection {self.conn_id!r} has no API key: set its password field (shown as 'API key')"
            )
        check_credential_text(conn.password, what="API key (password)", conn_id=self.conn_id)

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.connection.password}", "Accept": "application/json"}

    def _is_error_payload(self, payload: dict[str, Any]) -> bool:
        return payload.get("success") is False

    def _error_details(self, payload: dict[str, Any] | None) -> tuple[str | None, str | None, str | None]:
        if payload is None:
            return None, None, None
        error = payload.get("error")
        if not isinstance(error, dict):
            error = {}
        return clip_text(error.get("code")), clip_text(error.get("message")), clip_text(payload.get("traceId"))

    # ------------------------------------------------------------------ API

    def resolve_account_group_id(self, account_group_id: str | None = None) -> str:
        """
        Return the account group to use: the argument, else the connection's ``account_group_id`` extra.

        :raise ConnectionConfigError: when neither is set.
        """
        if account_group_id is None:  # only None falls back: an empty string is a mistake, refused below
            account_group_id = self._extra_str("account_group_id")
        if account_group_id is None:
            raise ConnectionConfigError(
                f"No account group: pass account_group_id, or set the extra 'account_group_id' "
                f"of connection {self.conn_id!r}"
            )
        return account_group_id

    def _quota_request(self, account_group_id: str | None, list_type: str | None) -> tuple[str, dict[str, Any]]:
        group = quote_path_segment(self.resolve_account_group_id(account_group_id), name="account_group_id")
        if list_type is not None and (not isinstance(list_type, str) or not list_type.strip()):
            raise InvalidParameterError(f"list_type must be a non-empty string or None, not {list_type!r}")
        return f"/v1/accounts/{group}/prospecting/quota", {"listType": list_type}

    def _parse_quota(self, response: JsonResponse) -> ProspectingQuota:
        from airflow_provider_quota.models import ProspectingQuota, SonarlyEnvelope, parse_payload

        what = "the answer of GET /v1/accounts/{id}/prospecting/quota"
        envelope = parse_payload(
            SonarlyEnvelope, response.payload, api=self.api_name, what=what, status=response.status
        )
        if not isinstance(envelope.data, dict):
            raise UnexpectedResponseError(
                f"{what} has no data object",
                api=self.api_name,
                status=response.status,
                code="UNEXPECTED_RESPONSE",
                trace_id=envelope.trace_id,
            )
        return parse_payload(
            ProspectingQuota,
            {**envelope.data, "trace_id": envelope.trace_id},
            api=self.api_name,
            what=f"data of {what}",
            status=response.status,
            trace_id=envelope.trace_id,
        )

    def get_prospecting_quota(
        self, account_group_id: str | None = None, list_type: str | None = None
    ) -> ProspectingQuota:
        """
        Get the prospecting quota of an account group (``GET /v1/accounts/{id}/prospecting/quota``).

        :param account_group_id: the account group; defaults to the connection's extra.
        :param list_type: e.g. ``LINKEDIN_CLASSIC``; sent as ``listType`` only when given.
        :raise QuotaApiError: on an error answer (401 bad key, 403 missing ``prospecting:read``...).
        """
        path, params = self._quota_request(account_group_id, list_type)
        return self._parse_quota(self.request_json("GET", path, params=params, headers=self._auth_headers()))

    async def aget_prospecting_quota(
        self, account_group_id: str | None = None, list_type: str | None = None
    ) -> ProspectingQuota:
        """Asynchronous :meth:`get_prospecting_quota`, for triggers."""
        await self.aget_checked_connection()
        path, params = self._quota_request(account_group_id, list_type)
        return self._parse_quota(await self.arequest_json("GET", path, params=params, headers=self._auth_headers()))

    def list_account_groups(self) -> list[AccountGroup]:
        """List the account groups the API key can see (``GET /v1/accounts``)."""
        from airflow_provider_quota.models import AccountGroupList, SonarlyEnvelope, parse_payload

        response = self.request_json("GET", "/v1/accounts", headers=self._auth_headers())
        what = "the answer of GET /v1/accounts"
        envelope = parse_payload(
            SonarlyEnvelope, response.payload, api=self.api_name, what=what, status=response.status
        )
        groups = parse_payload(
            AccountGroupList,
            envelope.data,
            api=self.api_name,
            what=f"data of {what}",
            status=response.status,
            trace_id=envelope.trace_id,
        )
        return groups.items

    def test_connection(self) -> tuple[bool, str]:
        """Check the API key with the free ``GET /v1/accounts``; used by the UI's Test button."""
        try:
            groups = self.list_account_groups()
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to {self.base_url}: the API key sees {len(groups)} account group(s)"
