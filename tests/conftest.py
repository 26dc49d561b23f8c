"""
Shared fixtures: a throwaway AIRFLOW_HOME, the sandbox over real HTTP, connections and databases.

Environment variables:

- ``QUOTA_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``): the PostgreSQL
  server of the warehouse tests. Unreachable: those tests skip with the reason; under ``CI=true``
  any skipped test fails the run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="quota-tests-airflow-home-")
# Set before anything imports airflow: a private home with an embedded SQLite metadata database.
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "example_dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"

from airflow_provider_quota.sandbox import SandboxClient, SandboxServer  # noqa: E402
from tests.ci_rules import in_ci  # noqa: E402
from tests.ci_rules import pytest_configure as register_ci_skip_rule  # noqa: E402

SONARLY_KEY = "sk_test_sandbox"
SONARLY_KEY_WITHOUT_PROSPECTING = "sk_test_no_prospecting"
INDEED_CLIENT_ID = "sandbox-client-id"
INDEED_SECRET = "sandbox-client-secret"
POSTGRES_URL = os.environ.get("QUOTA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = in_ci()


def pytest_configure(config: pytest.Config) -> None:
    register_ci_skip_rule(config)  # under CI=true, any skipped test fails the run


def postgres_connection_fields(url: str) -> dict[str, Any]:
    """The fields of an Airflow ``postgres`` connection to the server at ``url``."""
    parts = urlsplit(url)
    return {
        "conn_type": "postgres",
        "host": parts.hostname,
        "port": parts.port or 5432,
        "login": parts.username,
        "password": parts.password,
        "schema": parts.path.lstrip("/"),
    }


def read_xcom(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    """The return value a task of a ``dag.test()`` run pushed, read from the metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = (
            XComModel.get_many(
                run_id=dag_run.run_id,
                dag_ids=dag_run.dag_id,
                task_ids=task_id,
                map_indexes=map_index,
                key="return_value",
            )
            .with_only_columns(XComModel.value)
            .limit(1)
        )
        return XComModel.deserialize_value(session.execute(query).first())


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> str:
    """Define an Airflow connection through ``AIRFLOW_CONN_<ID>`` JSON for one test."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
    return conn_id


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxClient:
    """The sandbox's control API, reset to its start-up state for this test."""
    client = SandboxClient(sandbox_server.url)
    client.reset()
    return client


@pytest.fixture(autouse=True)
def _forget_indeed_tokens() -> Iterator[None]:
    from airflow_provider_quota.hooks import indeed

    indeed._TOKENS.clear()
    yield
    indeed._TOKENS.clear()


@pytest.fixture
def sonarly_conn(monkeypatch: pytest.MonkeyPatch, sandbox_server: SandboxServer) -> str:
    """``sonarly_default`` pointing at the sandbox, default account group ``ag_sandbox``."""
    return set_connection(
        monkeypatch,
        "sonarly_default",
        conn_type="sonarly",
        host=sandbox_server.url,
        password=SONARLY_KEY,
        extra={"account_group_id": "ag_sandbox"},
    )


@pytest.fixture
def indeed_conn(monkeypatch: pytest.MonkeyPatch, sandbox_server: SandboxServer) -> str:
    """``indeed_default`` pointing at the sandbox, default employer ``emp-acme``."""
    return set_connection(
        monkeypatch,
        "indeed_default",
        conn_type="indeed",
        host=sandbox_server.url,
        login=INDEED_CLIENT_ID,
        password=INDEED_SECRET,
        extra={"employer_id": "emp-acme"},
    )


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits of every hook, recorded instead of slept (time travel for backoffs)."""
    from airflow_provider_quota.hooks.base import QuotaApiHook

    sleeps: list[float] = []

    def sleep(self: QuotaApiHook, seconds: float) -> None:
        sleeps.append(seconds)

    async def asleep(self: QuotaApiHook, seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(QuotaApiHook, "_sleep", sleep)
    monkeypatch.setattr(QuotaApiHook, "_asleep", asleep)
    return sleeps


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL test server's URL; skips (fails under CI=true) when it cannot be reached."""
    import psycopg2

    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg2.Error as exc:
        reason = f"PostgreSQL test server {POSTGRES_URL} unreachable ({str(exc).strip()}); set QUOTA_TEST_POSTGRES"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_conn(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> str:
    """An Airflow ``postgres`` connection ``warehouse_pg`` to the test server."""
    return set_connection(monkeypatch, "warehouse_pg", **postgres_connection_fields(postgres_url))


@pytest.fixture
def sqlite_conn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """An Airflow ``sqlite`` connection ``warehouse_sqlite`` to a fresh file."""
    return set_connection(monkeypatch, "warehouse_sqlite", conn_type="sqlite", host=str(tmp_path / "warehouse.db"))


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the embedded SQLite metadata database once, for dag.test()."""
    from airflow.utils.db import resetdb

    resetdb()
