"""
A local server implementing the Sonarly and Indeed APIs, for offline DAG development, tests and the demo.

Run it with ``python -m airflow_provider_quota.sandbox --port 8765``. The hooks never import it.
"""

from __future__ import annotations

from airflow_provider_quota.sandbox.client import SandboxClient
from airflow_provider_quota.sandbox.server import SandboxServer
from airflow_provider_quota.sandbox.state import SandboxState

__all__ = ["SandboxClient", "SandboxServer", "SandboxState"]
