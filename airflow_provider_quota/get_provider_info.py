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
    """Return the provider's metadata: modules, connection types and their UI form."""
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
        ],
        "triggers": [
            {"integration-name": "Sonarly", "python-modules": ["airflow_provider_quota.triggers.sonarly"]},
        ],
        "operators": [
            {
                "integration-name": "Indeed Sponsored Jobs API",
                "python-modules": ["airflow_provider_quota.operators.indeed"],
            },
        ],
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
