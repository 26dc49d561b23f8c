"""A small client of the sandbox's control API, for tests, the demo and the benchmarks."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from airflow_provider_quota.sandbox.encoding import dump_json


class SandboxClient:
    """
    Drive a running sandbox: read its counters, inject faults, set quotas.

    :param url: the sandbox's base URL, e.g. ``http://127.0.0.1:8765``.
    """

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._session = requests.Session()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._session.request(
            method,
            f"{self.url}/_sandbox{path}",
            data=None if body is None else dump_json(body),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        """Requests received per endpoint, faults injected and tokens issued."""
        return dict(self._call("GET", "/stats"))

    def requests_to(self, endpoint: str) -> int:
        """Requests received by one endpoint (``sonarly_quota``, ``indeed_token``...)."""
        return int(self.stats()["requests"][endpoint])

    def recent_requests(self) -> list[dict[str, Any]]:
        """The last requests received, with their raw path and query."""
        return list(self._call("GET", "/requests"))

    def reset(self) -> None:
        """Back to the start-up state."""
        self._call("POST", "/reset")

    def add_fault(self, kind: str, **fields: Any) -> None:
        """Add a fault rule; see :class:`~airflow_provider_quota.sandbox.state.Fault` for the fields."""
        self._call("POST", "/faults", {"kind": kind, **fields})

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def set_quota(self, account_group_id: str, **fields: Any) -> dict[str, Any]:
        """Set ``limit``, ``used``, ``window_seconds``, ``reset_in_seconds`` or ``reset_after_first_check``."""
        return dict(self._call("PUT", f"/quota/{quote(account_group_id, safe='')}", fields))

    def set_usage(self, employer_id: str, **fields: Any) -> dict[str, Any]:
        """Set an employer's Indeed ``spend``, ``requests_count`` or ``api_quota`` for ``month`` (default: current)."""
        return dict(self._call("PUT", f"/usage/{quote(employer_id, safe='')}", fields))

    def set_token_lifetime(self, seconds: int) -> None:
        self._call("PUT", "/config", {"token_lifetime": seconds})

    def expire_tokens(self) -> None:
        self._call("POST", "/tokens/expire")
