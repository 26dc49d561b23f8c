"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_quota import __version__

_INSECURE_HTTP_FIELD = {
    "label": "Allow plain http:// to a non-loopback host",
    "description": "Off by default: credentials would cross the network unencrypted. "
    "Loopback hosts (the local sandbox) never need it.",
    "schema": {"type": ["boolean", "null"], "default": False},
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata: modules, connection types and their UI form, the Quotas page."""
    return {
        "package-name": "airflow-provider-quota",
        "name": "Quota (Sonarly prospecting quota, Indeed Sponsored Jobs API usage)",
        "description": "Gate DAGs on the Sonarly prospecting quota and extract Indeed Sponsored Jobs "
        "API usage, quota and spend into XCom or a warehouse table.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Sonarly",
                "external-doc-url": "https://api.sonarly.io",
                "tags": ["service"],
            },
            {
                "integration-name": "Indeed Sponsored Jobs API",
                "external-doc-url": "https://docs.indeed.com",
                "tags": ["service"],
            },
        ],
        "hooks": [
            {"integration-name": "Sonarly", "python-modules": ["airflow_provider_quota.hooks.sonarly"]},
            {
                "integration-name": "Indeed Sponsored Jobs API",
                "python-modules": ["airflow_provider_quota.hooks.indeed"],
            },
        ],
        "sensors": [
            {"integration-name": "Sonarly", "python-modules": ["airflow_provider_quota.sensors.sonarly"]},
            {
                "integration-name": "Indeed Sponsored Jobs API",
                "python-modules": ["airflow_provider_quota.sensors.indeed"],
            },
        ],
        "triggers": [
            {"integration-name": "Sonarly", "python-modules": ["airflow_provider_quota.triggers.sonarly"]},
            {
                "integration-name": "Indeed Sponsored Jobs API",
                "python-modules": ["airflow_provider_quota.triggers.indeed"],
            },
        ],
        "operators": [
            {
                "integration-name": "Indeed Sponsored Jobs API",
                "python-modules": ["airflow_provider_quota.operators.indeed"],
            },
        ],
        "plugins": [{"name": "quotas", "plugin-class": "airflow_provider_quota.plugins.quotas.QuotasPlugin"}],
        "config": {
            "quota": {
                "description": "The Quotas page of the Airflow UI (Browse > Quotas), served by the API server.",
                "options": {
                    "ui_cache_seconds": {
                        "description": "How long the page reuses a prospecting quota it read: any number of "
                        "page views costs at most one API request per connection, account group and list "
                        "type in this period (errors included).",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "300",
                        "default": "60",
                    },
                    "spend_conn_id": {
                        "description": "The common.sql connection of the warehouse table written by "
                        "IndeedQuotaUsageOperator; empty: the page shows no Indeed spend.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "quota_warehouse",
                        "default": "",
                    },
                    "spend_table": {
                        "description": "That table, as 'table' or 'schema.table'.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "analytics.indeed_api_quota_usage",
                        "default": "indeed_api_quota_usage",
                    },
                },
            }
        },
        "connection-types": [
            {
                "connection-type": "sonarly",
                "hook-class-name": "airflow_provider_quota.hooks.sonarly.SonarlyHook",
                "hook-name": "Sonarly",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"host": "API URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://api.sonarly.io (default when empty)",
                        "password": "sk_live_...",
                    },
                },
                "conn-fields": {
                    "account_group_id": {
                        "label": "Default account group ID",
                        "description": "Account group used when a task names none, e.g. "
                        "507f1f77bcf86cd799439011 (see GET /v1/accounts for the ids your key can see).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "allow_insecure_http": _INSECURE_HTTP_FIELD,
                },
            },
            {
                "connection-type": "indeed",
                "hook-class-name": "airflow_provider_quota.hooks.indeed.IndeedHook",
                "hook-name": "Indeed Sponsored Jobs API",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"host": "API URL", "login": "Client ID", "password": "Client secret"},
                    "placeholders": {
                        "host": "https://apis.indeed.com (default when empty)",
                        "login": "OAuth client id of your Indeed app",
                        "password": "OAuth client secret",
                    },
                },
                "conn-fields": {
                    "employer_id": {
                        "label": "Employer ID",
                        "description": "Employer the access token represents when a task names none, e.g. emp-123.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "scope": {
                        "label": "OAuth scope",
                        "description": "Space-separated scopes; default employer.advertising.account.read.",
                        "schema": {"type": ["string", "null"], "default": "employer.advertising.account.read"},
                    },
                    "allow_insecure_http": _INSECURE_HTTP_FIELD,
                },
            },
        ],
    }
