"""
Shared fixtures: a throwaway AIRFLOW_HOME, the sandbox over real HTTP, connections and databases.

Environment variables:

- ``QUOTA_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``): the PostgreSQL
  server of the warehouse tests. Unreachable: those tests skip with the reason; under ``CI=true``
  any skipped test fails the run.
- ``QUOTA_TEST_MYSQL`` (default ``mysql://root@127.0.0.1:3306/test``): the MySQL or MariaDB server
  of the tests marked ``mysql``. They need the ``mysql`` dependency group (mysqlclient compiles
  against libmariadb-dev), so ``make test`` deselects them and ``make test-mysql`` runs them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
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
MYSQL_URL = os.environ.get("QUOTA_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
IN_CI = in_ci()

#: The warehouses the write tests run on (``@pytest.fixture(params=WAREHOUSES)`` with
#: :func:`warehouse_conn_id`): SQLite always, the servers when reachable (under CI=true, always).
WAREHOUSES = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


def pytest_configure(config: pytest.Config) -> None:
    register_ci_skip_rule(config)  # under CI=true, any skipped test fails the run


def server_connection_fields(url: str) -> dict[str, Any]:
    """The fields of an Airflow connection to the database server at ``url`` (postgresql:// or mysql://)."""
    parts = urlsplit(url)
    conn_type, default_port = {"postgresql": ("postgres", 5432), "mysql": ("mysql", 3306)}[parts.scheme]
    return {
        "conn_type": conn_type,
        "host": parts.hostname,
        "port": parts.port or default_port,
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


@contextmanager
def time_travel(monkeypatch: pytest.MonkeyPatch, start: datetime) -> Iterator[Any]:
    """
    Travel in time from ``start``: sleeps move the clock (the sandbox's too, it runs in this process)
    instead of waiting: ``time.sleep`` (what a sensor in poke mode sleeps with) and the triggers'
    asyncio sleeps. ``traveller.slept`` lists them.
    """
    import time

    import time_machine

    with time_machine.travel(start, tick=True) as traveller:
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            traveller.shift(seconds)

        async def asleep(seconds: float) -> None:
            sleep(seconds)

        monkeypatch.setattr(time, "sleep", sleep)
        monkeypatch.setattr("airflow_provider_quota.triggers.base._sleep", asleep)
        traveller.slept = slept  # type: ignore[attr-defined]
        yield traveller


async def first_event(trigger: Any) -> dict[str, Any]:
    """Run a trigger until its first event; its payload."""
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


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


def sonarly_at(monkeypatch: pytest.MonkeyPatch, host: str, *, password: str = SONARLY_KEY, **extra: Any) -> str:
    """``sonarly_default`` at ``host``: the sandbox's key unless given, default account group ``ag_sandbox``."""
    return set_connection(
        monkeypatch,
        "sonarly_default",
        conn_type="sonarly",
        host=host,
        password=password,
        extra={"account_group_id": "ag_sandbox", **extra},
    )


def indeed_at(monkeypatch: pytest.MonkeyPatch, host: str, *, password: str = INDEED_SECRET, **extra: Any) -> str:
    """``indeed_default`` at ``host``: the sandbox's client unless a secret is given, default employer ``emp-acme``."""
    return set_connection(
        monkeypatch,
        "indeed_default",
        conn_type="indeed",
        host=host,
        login=INDEED_CLIENT_ID,
        password=password,
        extra={"employer_id": "emp-acme", **extra},
    )


@pytest.fixture
def sonarly_conn(monkeypatch: pytest.MonkeyPatch, sandbox_server: SandboxServer) -> str:
    """``sonarly_default`` pointing at the sandbox, default account group ``ag_sandbox``."""
    return sonarly_at(monkeypatch, sandbox_server.url)


@pytest.fixture
def indeed_conn(monkeypatch: pytest.MonkeyPatch, sandbox_server: SandboxServer) -> str:
    """``indeed_default`` pointing at the sandbox, default employer ``emp-acme``."""
    return indeed_at(monkeypatch, sandbox_server.url)


def dag_test_callbacks_get_the_exception() -> bool:
    """
    Whether task callbacks of a ``dag.test()`` run find the task's error as ``exception`` in their context.

    Real task runs always pass it (apache/airflow#52055); ``dag.test()``'s in-process runner does from
    task SDK 1.3 (Airflow 3.3) on, not in 1.2 (Airflow 3.2), where ``{{ exception }}`` is undefined.
    """
    import inspect

    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    return 'context["exception"]' in inspect.getsource(InProcessTestSupervisor.start)


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """A local SMTP server (aiosmtpd) that ``smtp_default`` points at; the messages it received, parsed."""
    import email
    import socket

    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    extra = {"disable_ssl": True, "disable_tls": True}
    set_connection(monkeypatch, "smtp_default", conn_type="smtp", host="127.0.0.1", port=port, extra=extra)
    try:
        yield received
    finally:
        controller.stop()


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits of every hook, recorded instead of slept (time travel for backoffs)."""
    from airflow_provider_quota.hooks.base import QuotaApiHook

    sleeps: list[float] = []

    async def asleep(self: QuotaApiHook, seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(QuotaApiHook, "_asleep", asleep)
    return sleeps


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL test server's URL; skips (fails under CI=true) when it cannot be reached."""
    import psycopg2

    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg2.Error as exc:
        _unreachable(f"PostgreSQL test server {POSTGRES_URL} unreachable ({str(exc).strip()}); set QUOTA_TEST_POSTGRES")
    return POSTGRES_URL


@pytest.fixture
def postgres_conn(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> str:
    """An Airflow ``postgres`` connection ``warehouse_pg`` to the test server."""
    return set_connection(monkeypatch, "warehouse_pg", **server_connection_fields(postgres_url))


def _unreachable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """The MySQL/MariaDB test server's URL; skips (fails under CI=true) when it cannot be used."""
    try:
        import airflow.providers.mysql  # noqa: F401
        import MySQLdb
    except ImportError as exc:
        _unreachable(f"the mysql test group is not installed ({exc}); run make test-mysql")
    parts = urlsplit(MYSQL_URL)
    try:
        MySQLdb.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            database=parts.path.lstrip("/"),
            connect_timeout=3,
        ).close()
    except MySQLdb.Error as exc:
        _unreachable(f"MySQL test server {MYSQL_URL} unreachable ({exc}); set QUOTA_TEST_MYSQL")
    return MYSQL_URL


@pytest.fixture
def mysql_conn(monkeypatch: pytest.MonkeyPatch, mysql_url: str) -> str:
    """An Airflow ``mysql`` connection ``warehouse_mysql`` to the test server."""
    return set_connection(monkeypatch, "warehouse_mysql", **server_connection_fields(mysql_url))


def warehouse_conn_id(request: pytest.FixtureRequest) -> str:
    """The connection id of the warehouse a fixture parametrized with :data:`WAREHOUSES` is on."""
    return str(request.getfixturevalue(f"{request.param}_conn"))


def fail_writes_of(conn_id: str, table: str, month: str) -> Callable[[], None]:
    """
    Make the warehouse raise a real database error whenever a row of ``month`` is inserted or updated in ``table``.

    Triggers in the dialect's own language (SQLite, PostgreSQL, MySQL) raise "injected database
    failure". Returns the function that removes them.
    """
    from airflow_provider_quota.utils.warehouse import get_db_hook

    hook = get_db_hook(conn_id)
    if hook.dialect_name == "sqlite":
        for event in ("INSERT", "UPDATE"):
            hook.run(
                f"CREATE TRIGGER {table}_fail_{event} BEFORE {event} ON {table} WHEN NEW.month = '{month}' "
                "BEGIN SELECT RAISE(ABORT, 'injected database failure'); END"
            )
        return lambda: hook.run([f"DROP TRIGGER {table}_fail_{event}" for event in ("INSERT", "UPDATE")])
    if hook.dialect_name == "mysql":
        for event in ("INSERT", "UPDATE"):
            hook.run(
                f"CREATE TRIGGER {table}_fail_{event} BEFORE {event} ON {table} FOR EACH ROW BEGIN "
                f"IF NEW.month = '{month}' THEN SIGNAL SQLSTATE '45000' "
                "SET MESSAGE_TEXT = 'injected database failure'; END IF; END"
            )
        return lambda: hook.run([f"DROP TRIGGER {table}_fail_{event}" for event in ("INSERT", "UPDATE")])
    hook.run(
        f"CREATE FUNCTION {table}_fail() RETURNS trigger AS $$ BEGIN IF NEW.month = '{month}' THEN "
        f"RAISE EXCEPTION 'injected database failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql; "
        f"CREATE TRIGGER {table}_fail BEFORE INSERT OR UPDATE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_fail()"
    )
    return lambda: hook.run(f"DROP FUNCTION IF EXISTS {table}_fail() CASCADE")


@pytest.fixture
def sqlite_conn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """An Airflow ``sqlite`` connection ``warehouse_sqlite`` to a fresh file."""
    return set_connection(monkeypatch, "warehouse_sqlite", conn_type="sqlite", host=str(tmp_path / "warehouse.db"))


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the embedded SQLite metadata database once, for dag.test()."""
    from airflow.utils.db import resetdb

    resetdb()
