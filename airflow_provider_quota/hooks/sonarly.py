"""Hook for the Sonarly public API: account groups and the prospecting quota."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_quota.exceptions import ConnectionConfigError, InvalidParameterError
from airflow_provider_quota.hooks.base import QuotaApiHook, check_credential_text, quote_path_segment

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_quota.models import AccountGroup, ProspectingQuota

QUOTA_PATH = "/v1/accounts/{account_group_id}/prospecting/quota"


class SonarlyHook(QuotaApiHook):
    """
    Interact with the Sonarly public API, authenticated with an API key.

    The connection (type ``sonarly``) holds the API key in its password field, sent as
    ``Authorization: Bearer <key>``; the host is optional (``https://api.sonarly.io``);
    the extra ``account_group_id`` is the account group used when a call names none.

    .. seealso::
        :class:`~airflow_provider_quota.hooks.base.HttpSettings` for timeouts, limits and retries.

    :param sonarly_conn_id: the Airflow connection id.
    :param settings: :class:`~airflow_provider_quota.hooks.base.HttpSettings` as keyword arguments.
    """

    conn_name_attr = "sonarly_conn_id"
    default_conn_name = "sonarly_default"
    conn_type = "sonarly"
    hook_name = "Sonarly"
    api_name = "Sonarly"
    default_host = "https://api.sonarly.io"

    def __init__(self, sonarly_conn_id: str = default_conn_name, **settings: Any) -> None:
        super().__init__(sonarly_conn_id, **settings)
        self.sonarly_conn_id = sonarly_conn_id

    def _check_credentials(self, conn: Connection) -> None:
        if not conn.password:
            raise ConnectionConfigError(
                f"Connection {self.conn_id!r} has no API key: set its password field (shown as 'API key')"
            )
        check_credential_text(conn.password, what="API key (password)", conn_id=self.conn_id)

    def _secrets(self) -> list[str]:
        return [self.connection.password or ""]

    def _is_error_payload(self, payload: dict[str, Any]) -> bool:
        return payload.get("success") is False

    def _error_details(self, payload: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
        from airflow_provider_quota.models import SonarlyEnvelope, error_details

        return error_details(SonarlyEnvelope[Any], payload)

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

    def quota_path(self, account_group_id: str | None = None) -> str:
        """The quota's path for an account group (the argument, else the connection's), URL-encoded."""
        group = quote_path_segment(self.resolve_account_group_id(account_group_id), name="account_group_id")
        return QUOTA_PATH.format(account_group_id=group)

    async def aget_prospecting_quota(
        self, account_group_id: str | None = None, list_type: str | None = None
    ) -> ProspectingQuota:
        """Asynchronous :meth:`get_prospecting_quota`, for triggers."""
        from airflow_provider_quota.models import ProspectingQuota, SonarlyEnvelope, parse_payload

        await self.aget_checked_connection()
        path = self.quota_path(account_group_id)
        if list_type is not None and (not isinstance(list_type, str) or not list_type.strip() or len(list_type) > 256):
            raise InvalidParameterError(f"list_type must be a non-empty string or None, not {list_type!r:.80}")
        response = await self.arequest_json("GET", path, params={"listType": list_type}, token=self.connection.password)
        what = f"GET {QUOTA_PATH}"
        envelope = parse_payload(
            SonarlyEnvelope[dict[str, Any]], response.payload, api=self.api_name, what=what, status=response.status
        )
        return parse_payload(
            ProspectingQuota,
            {**envelope.data, "trace_id": envelope.trace_id},
            api=self.api_name,
            what=what,
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
        return self.run_sync(self.aget_prospecting_quota(account_group_id, list_type))

    def list_account_groups(self) -> list[AccountGroup]:
        """List the account groups the API key can see (``GET /v1/accounts``)."""
        from airflow_provider_quota.models import AccountGroupList, SonarlyEnvelope, parse_payload

        async def list_groups() -> list[AccountGroup]:
            response = await self.arequest_json("GET", "/v1/accounts", token=self.connection.password)
            envelope = parse_payload(
                SonarlyEnvelope[AccountGroupList],
                response.payload,
                api=self.api_name,
                what="GET /v1/accounts",
                status=response.status,
            )
            return envelope.data.items

        return self.run_sync(list_groups())

    def test_connection(self) -> tuple[bool, str]:
        """Check the API key with the free ``GET /v1/accounts``; used by the UI's Test button."""
        try:
            groups = self.list_account_groups()
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to {self.base_url}: the API key sees {len(groups)} account group(s)"
