"""
OpenLineage: the operator's and the sensor's datasets, with the OpenLineage provider installed and without it.

The operator and the sensor run against the sandbox over real HTTP and write to real SQLite and
PostgreSQL databases; the lineage is asked for the way the provider asks (through its
DefaultExtractor), and once end to end through the provider's listener with dag.test().
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor
from airflow_provider_quota.utils.warehouse import COLUMNS, create_table_sql, get_db_hook
from tests.conftest import INDEED_CLIENT_ID, INDEED_SECRET, REPO, SONARLY_KEY, set_connection

pytest.importorskip("airflow.providers.openlineage", reason="these tests need the OpenLineage provider")

TABLE = "indeed_api_quota_usage"


def names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(dataset.namespace, dataset.name) for dataset in datasets]


def provider_lineage(task: Any) -> Any:
    """Ask for the lineage as the OpenLineage provider does on success (its errors would be swallowed)."""
    from airflow.providers.openlineage.extractors.base import DefaultExtractor
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    assert ExtractorManager().get_extractor_class(task) is DefaultExtractor
    direct = task.get_openlineage_facets_on_complete(None)  # raises here instead of being logged
    through_provider = DefaultExtractor(task).extract_on_complete(None)
    assert through_provider is not None
    assert names(through_provider.inputs) == names(direct.inputs)
    assert names(through_provider.outputs) == names(direct.outputs)
    return direct


def secrets() -> list[str]:
    """Every credential the tests use, and every access token the sandbox issued in this process."""
    from airflow_provider_quota.hooks import indeed

    return [INDEED_SECRET, SONARLY_KEY, *(token.value for token in indeed._TOKENS.values())]


def assert_no_secret(lineage: Any) -> None:
    from openlineage.client.serde import Serde

    text = json.dumps([Serde.to_dict(dataset) for dataset in [*lineage.inputs, *lineage.outputs]])
    assert len(secrets()) >= 3  # an access token was issued, so the check covers it
    for secret in secrets():
        assert secret not in text
    assert "Bearer" not in text and "password" not in text.lower()


def schema_fields(dataset: Any) -> list[tuple[str, str | None]]:
    return [(field.name, field.type) for field in dataset.facets["schema"].fields]


# ----------------------------------------------------------------------------- the operator


def test_sqlite_run_reads_each_month_and_writes_the_table(indeed_conn, sqlite_conn, sandbox, sandbox_server):
    operator = IndeedQuotaUsageOperator(task_id="extract", month=["122024", "012025"], sql_conn_id=sqlite_conn)
    operator.execute({})
    requests_before = sandbox.stats()["total_requests"]

    lineage = provider_lineage(operator)

    assert names(lineage.inputs) == [
        (sandbox_server.url, "ads/v1/apiquotausage/emp-acme/122024"),
        (sandbox_server.url, "ads/v1/apiquotausage/emp-acme/012025"),
    ]
    assert lineage.inputs[0].facets["dataSource"].uri == sandbox_server.url
    database = get_db_hook(sqlite_conn).get_connection(sqlite_conn).host
    assert names(lineage.outputs) == [(f"file://{socket.gethostname()}", f"{database}/{TABLE}")]
    # the schema facet lists the columns with the types the operator created them with
    fields = schema_fields(lineage.outputs[0])
    assert [name for name, _ in fields] == list(COLUMNS)
    ddl = create_table_sql(TABLE, "sqlite")
    assert all(f"{name} {type_} NOT NULL" in ddl for name, type_ in fields)
    assert sandbox.stats()["total_requests"] == requests_before  # lineage asked nothing of the API
    assert_no_secret(lineage)


def test_current_month_is_named_by_the_month_the_api_answered(indeed_conn, sandbox, sandbox_server):
    operator = IndeedQuotaUsageOperator(task_id="extract", employer_id="emp-globex", month="current")
    result = operator.execute({})
    lineage = provider_lineage(operator)
    assert names(lineage.inputs) == [(sandbox_server.url, f"ads/v1/apiquotausage/emp-globex/{result['month']}")]


def test_xcom_only_run_has_no_output(indeed_conn, sandbox, sandbox_server):
    operator = IndeedQuotaUsageOperator(task_id="extract", month="2025-02")
    operator.execute({})
    lineage = provider_lineage(operator)
    assert names(lineage.inputs) == [(sandbox_server.url, "ads/v1/apiquotausage/emp-acme/022025")]
    assert lineage.outputs == []
    assert_no_secret(lineage)


def test_employer_ids_are_one_path_segment(indeed_conn, sandbox, sandbox_server):
    operator = IndeedQuotaUsageOperator(task_id="extract", employer_id="emp-eu-initech", month="012025")
    operator.execute({})
    assert names(provider_lineage(operator).inputs) == [
        (sandbox_server.url, "ads/v1/apiquotausage/emp-eu-initech/012025")
    ]
    from airflow_provider_quota.utils.lineage import indeed_usage_dataset

    odd = indeed_usage_dataset("https://apis.indeed.com", "emp/1 ?x", "012025")
    assert odd.name == "ads/v1/apiquotausage/emp%2F1%20%3Fx/012025"


def test_a_failed_write_reports_the_reads_and_no_output(indeed_conn, sandbox, monkeypatch, tmp_path):
    set_connection(monkeypatch, "broken_sqlite", conn_type="sqlite", host=str(tmp_path / "missing-dir" / "w.db"))
    operator = IndeedQuotaUsageOperator(task_id="extract", month="012025", sql_conn_id="broken_sqlite")
    with pytest.raises(Exception, match=r"unable to open database file"):
        operator.execute({})
    lineage = provider_lineage(operator)  # the provider asks on failure too
    assert [name for _, name in names(lineage.inputs)] == ["ads/v1/apiquotausage/emp-acme/012025"]
    assert lineage.outputs == []


def test_nothing_read_nothing_reported(indeed_conn, sandbox):
    operator = IndeedQuotaUsageOperator(task_id="extract", month="132025", sql_conn_id="anything")
    with pytest.raises(Exception, match="not a real month"):
        operator.execute({})
    lineage = provider_lineage(operator)
    assert lineage.inputs == [] and lineage.outputs == []


@pytest.mark.postgres
def test_postgres_table_is_named_as_the_sql_integrations_name_it(
    indeed_conn, postgres_conn, postgres_url, sandbox, sandbox_server
):
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    table = f"ol_usage_{uuid.uuid4().hex[:10]}"
    hook = get_db_hook(postgres_conn)
    try:
        operator = IndeedQuotaUsageOperator(task_id="extract", month="012025", sql_conn_id=postgres_conn, table=table)
        operator.execute({})
        lineage = provider_lineage(operator)

        parts = urlsplit(postgres_url)
        expected = (f"postgres://{parts.hostname}:{parts.port or 5432}", f"{parts.path.lstrip('/')}.public.{table}")
        assert names(lineage.outputs) == [expected]
        assert names(lineage.inputs) == [(sandbox_server.url, "ads/v1/apiquotausage/emp-acme/012025")]
        # the same dataset a plain SQL task reading the table reports, so the graph joins up
        read_table = SQLExecuteQueryOperator(task_id="read_table", conn_id=postgres_conn, sql=f"SELECT * FROM {table}")
        read = read_table.get_openlineage_facets_on_start()
        assert names(read.inputs) == [expected]
        assert schema_fields(lineage.outputs[0]) == schema_fields(read.inputs[0])
        assert [name for name, _ in schema_fields(lineage.outputs[0])] == list(COLUMNS)
        assert dict(schema_fields(lineage.outputs[0]))["spend_amount"] == "numeric"
        assert_no_secret(lineage)
    finally:
        hook.run(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.postgres
def test_postgres_schema_qualified_table(indeed_conn, postgres_conn, postgres_url, sandbox):
    schema = f"ol_schema_{uuid.uuid4().hex[:10]}"
    hook = get_db_hook(postgres_conn)
    hook.run(f"CREATE SCHEMA {schema}")
    try:
        operator = IndeedQuotaUsageOperator(
            task_id="extract", month="012025", sql_conn_id=postgres_conn, table=f"{schema}.usage"
        )
        operator.execute({})
        [output] = provider_lineage(operator).outputs
        assert output.name == f"{urlsplit(postgres_url).path.lstrip('/')}.{schema}.usage"
    finally:
        hook.run(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.postgres
def test_unreachable_warehouse_at_lineage_time_keeps_the_inputs(indeed_conn, postgres_conn, sandbox, monkeypatch):
    table = f"ol_usage_{uuid.uuid4().hex[:10]}"
    variable = f"AIRFLOW_CONN_{postgres_conn.upper()}"
    reachable = os.environ[variable]
    operator = IndeedQuotaUsageOperator(task_id="extract", month="012025", sql_conn_id=postgres_conn, table=table)
    try:
        operator.execute({})
        # the database goes away before the provider asks: a closed port refuses at once
        set_connection(monkeypatch, postgres_conn, conn_type="postgres", host="127.0.0.1", port=1, schema="test")
        lineage = provider_lineage(operator)
        assert [name for _, name in names(lineage.inputs)] == ["ads/v1/apiquotausage/emp-acme/012025"]
        assert lineage.outputs == []
    finally:
        monkeypatch.setenv(variable, reachable)
        get_db_hook(postgres_conn).run(f"DROP TABLE IF EXISTS {table}")


def test_schema_facet_types_match_the_ddl_on_every_dialect():
    from airflow_provider_quota.utils.lineage import _schema_facet

    for dialect in ("sqlite", "postgresql", "mysql"):
        ddl = create_table_sql(TABLE, dialect)
        fields = _schema_facet(dialect, with_types=True).fields
        assert [field.name for field in fields] == list(COLUMNS)
        for field in fields:
            assert f"{field.name} {field.type} NOT NULL" in ddl, (dialect, field.name)
    assert {field.type for field in _schema_facet("sqlite", with_types=False).fields} == {None}


# ----------------------------------------------------------------------------- the sensor


def test_sensor_reports_the_quota_it_checked(sonarly_conn, sandbox, sandbox_server):
    sensor = SonarlyQuotaSensor(task_id="gate", poke_interval=1, timeout=60)
    sensor.execute({})
    requests_before = sandbox.stats()["total_requests"]
    lineage = provider_lineage(sensor)
    assert names(lineage.inputs) == [(sandbox_server.url, "v1/accounts/ag_sandbox/prospecting/quota")]
    assert lineage.outputs == []
    assert lineage.inputs[0].facets["dataSource"].name == "Sonarly"
    assert sandbox.stats()["total_requests"] == requests_before
    assert_no_secret_sensor(lineage)


def test_sensor_names_the_list_type_and_encodes_the_account_group(sonarly_conn, sandbox, sandbox_server):
    sensor = SonarlyQuotaSensor(task_id="gate", account_group_id="ag 1/x", list_type="LINKEDIN_CLASSIC")
    lineage = provider_lineage(sensor)  # reads the connection only: no request at all
    assert names(lineage.inputs) == [(sandbox_server.url, "v1/accounts/ag%201%2Fx/prospecting/quota/LINKEDIN_CLASSIC")]
    assert sandbox.stats()["total_requests"] == 0


def test_deferred_sensor_reports_its_input_after_resuming(sonarly_conn, sandbox, sandbox_server):
    from airflow.sdk.exceptions import TaskDeferred

    sandbox.set_quota("ag_sandbox", used=25, reset_after_first_check=1.0)
    with pytest.raises(TaskDeferred) as caught:
        SonarlyQuotaSensor(task_id="gate", deferrable=True, jitter=0, timeout=60).execute({})

    async def first_event() -> dict[str, Any]:
        async for event in caught.value.trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    # resumed in a new process: a new sensor object that never ran execute()
    resumed = SonarlyQuotaSensor(task_id="gate", deferrable=True, jitter=0, timeout=60)
    assert resumed.execute_complete({}, event)["exhausted"] is False
    requests_before = sandbox.stats()["total_requests"]
    lineage = provider_lineage(resumed)
    assert names(lineage.inputs) == [(sandbox_server.url, "v1/accounts/ag_sandbox/prospecting/quota")]
    assert sandbox.stats()["total_requests"] == requests_before


def assert_no_secret_sensor(lineage: Any) -> None:
    from openlineage.client.serde import Serde

    text = json.dumps([Serde.to_dict(dataset) for dataset in lineage.inputs])
    assert SONARLY_KEY not in text and "Bearer" not in text


# ----------------------------------------------------------------------------- end to end, and without the provider

DAG_FILE = """
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor

with DAG(dag_id="quota_lineage", schedule=None, start_date=datetime(2025, 1, 1, tzinfo=timezone.utc)):
    gate = SonarlyQuotaSensor(task_id="gate", list_type="LINKEDIN_CLASSIC", deferrable=True, jitter=0, timeout=120)
    extract = IndeedQuotaUsageOperator(
        task_id="extract", month=["122024", "012025"], sql_conn_id="warehouse_sqlite", table="usage"
    )
    gate >> extract
"""

RUN_DAG = """
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.db import resetdb

resetdb()
bag = DagBag(dag_folder={dags!r})
assert bag.import_errors == {{}}, bag.import_errors
print("DAG RUN", bag.dags["quota_lineage"].test().state)
"""


@pytest.mark.dag_test
def test_provider_listener_emits_the_datasets_end_to_end(sonarly_conn, indeed_conn, sqlite_conn, sandbox, tmp_path):
    """dag.test() with the OpenLineage listener writing events to a file: the sensor defers and resumes."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "quota_lineage.py").write_text(DAG_FILE)
    events_file = tmp_path / "openlineage.jsonl"
    sandbox.set_quota("ag_sandbox", used=25, reset_after_first_check=1.0)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "home"),  # its own metadata database
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'home' / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "quota-tests",
        "PYTHONPATH": str(REPO),
    }
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", RUN_DAG.format(dags=str(dags))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "DAG RUN success" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]

    text = events_file.read_text()
    events = [json.loads(line) for line in text.splitlines()]
    complete = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    url = sandbox_url_from(sonarly_conn)
    assert names_of(complete["quota_lineage.gate"]["inputs"]) == [
        (url, "v1/accounts/ag_sandbox/prospecting/quota/LINKEDIN_CLASSIC")
    ]
    extract = complete["quota_lineage.extract"]
    assert names_of(extract["inputs"]) == [
        (url, "ads/v1/apiquotausage/emp-acme/122024"),
        (url, "ads/v1/apiquotausage/emp-acme/012025"),
    ]
    database = json.loads(os.environ[f"AIRFLOW_CONN_{sqlite_conn.upper()}"])["host"]
    assert names_of(extract["outputs"]) == [(f"file://{socket.gethostname()}", f"{database}/usage")]
    assert [f["name"] for f in extract["outputs"][0]["facets"]["schema"]["fields"]] == list(COLUMNS)
    assert sandbox.requests_to("sonarly_quota") == 2  # lineage added no request: one check, one after the reset
    for secret in (INDEED_SECRET, SONARLY_KEY):
        assert secret not in text
    assert INDEED_CLIENT_ID not in json.dumps([e.get("inputs") for e in events] + [e.get("outputs") for e in events])


def sandbox_url_from(conn_id: str) -> str:
    return str(json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])["host"])


def names_of(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(dataset["namespace"], dataset["name"]) for dataset in datasets]


WITHOUT_OPENLINEAGE = """
import importlib
import importlib.abc
import importlib.metadata
import pkgutil
import sys

import importlib_metadata


class NoOpenLineage(importlib.abc.MetaPathFinder):
    # What an environment without apache-airflow-providers-openlineage (and its client) looks like.
    def find_spec(self, name, path=None, target=None):
        for blocked in ("openlineage", "airflow.providers.openlineage"):
            if name == blocked or name.startswith(blocked + "."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def hidden(distribution):
    name = (distribution.metadata["Name"] or "").lower().replace("_", "-")
    return name == "apache-airflow-providers-openlineage" or name.startswith("openlineage-")


# ... and whose provider list (entry points) does not name it.
for metadata in (importlib.metadata, importlib_metadata):
    original = metadata.Distribution.discover.__func__

    def discover(cls, *args, _original=original, **kwargs):
        return (found for found in _original(cls, *args, **kwargs) if not hidden(found))

    metadata.Distribution.discover = classmethod(discover)
sys.meta_path.insert(0, NoOpenLineage())
for name in list(sys.modules):
    if name.startswith(("openlineage", "airflow.providers.openlineage")):
        del sys.modules[name]
try:
    import airflow.providers.openlineage.extractors  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the OpenLineage provider could still be imported")
assert not [p for p in importlib_metadata.entry_points(group="apache_airflow_provider") if "openlineage" in p.value]

import airflow_provider_quota

for info in pkgutil.walk_packages(airflow_provider_quota.__path__, "airflow_provider_quota."):
    importlib.import_module(info.name)

from airflow_provider_quota.utils.lineage import openlineage_available
from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor

assert not openlineage_available()
operator = IndeedQuotaUsageOperator(task_id="extract", month="012025", sql_conn_id="warehouse_sqlite")
record = operator.execute({})
sensor = SonarlyQuotaSensor(task_id="gate", timeout=60)
quota = sensor.execute({})
assert operator.get_openlineage_facets_on_complete(None) is None
assert sensor.get_openlineage_facets_on_complete(None) is None
loaded = sorted(name for name in sys.modules if name.startswith(("openlineage", "airflow.providers.openlineage")))
assert loaded == [], loaded
print("RAN WITHOUT OPENLINEAGE", record["month"], quota["remaining"])
"""


def run_snippet(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with this test's connections; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_without_the_openlineage_provider_everything_imports_and_runs(sonarly_conn, indeed_conn, sqlite_conn, sandbox):
    done = run_snippet(textwrap.dedent(WITHOUT_OPENLINEAGE))
    assert "RAN WITHOUT OPENLINEAGE 012025 25" in done.stdout
    rows = get_db_hook(sqlite_conn).get_records(f"SELECT employer_id, month FROM {TABLE}")
    assert rows == [("emp-acme", "012025")]
    assert sandbox.requests_to("sonarly_quota") == 1


COSTS_NOTHING = """
import sys

from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator
from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor

IndeedQuotaUsageOperator(task_id="extract", month="012025", sql_conn_id="warehouse_sqlite").execute({})
SonarlyQuotaSensor(task_id="gate", timeout=60).execute({})
heavy = ("openlineage", "airflow.providers.openlineage.extractors", "airflow.providers.openlineage.sqlparser")
loaded = sorted(name for name in sys.modules if name.startswith(heavy))
assert loaded == [], loaded
print("NO OPENLINEAGE IMPORTED")
"""


def test_installed_provider_costs_nothing_until_it_asks(sonarly_conn, indeed_conn, sqlite_conn, sandbox):
    """With the provider installed but not asking (no listener), running the tasks imports none of it."""
    done = run_snippet(COSTS_NOTHING)
    assert "NO OPENLINEAGE IMPORTED" in done.stdout
