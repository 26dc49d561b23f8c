"""
One real Airflow deployment for the whole session, and what scenarios use to drive and observe it.

Environment variables:

- ``QUOTA_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``): the server on
  which the run creates (and drops) its metadata database and its warehouse database.
- ``QUOTA_IT_REDIS`` (default ``redis://127.0.0.1:6379``): the Redis the broker uses; when none
  answers, the run starts a ``redis-server`` of its own on a free port.
- ``QUOTA_IT_ROOT`` (default ``.integration``): the run's folder; logs under ``<root>/logs``.
- ``QUOTA_IT_RESULTS`` (default ``<root>/results.json``): the figures the report turns into a table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_quota.sandbox import SandboxServer
from tests.conftest import INDEED_CLIENT_ID, INDEED_SECRET, REPO, SONARLY_KEY
from tests.deployment.cluster import Deployment
from tests.deployment.harness import Harness, IssuedSecrets
from tests.deployment.results import Results, scenario_rank
from tests.deployment.services import DEFAULT_REDIS, postgres_database, redis_broker

ROOT = Path(os.environ.get("QUOTA_IT_ROOT", REPO / ".integration"))
RESULTS = Path(os.environ.get("QUOTA_IT_RESULTS", ROOT / "results.json"))
POSTGRES = os.environ.get("QUOTA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("QUOTA_IT_REDIS", DEFAULT_REDIS)

_SECONDS = pytest.StashKey[float]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    deployment_items = [item for item in items if "deployment" in item.path.parts]
    if deployment_items:
        # Stable: a module's tests keep their order.
        ordered = sorted(deployment_items, key=lambda item: scenario_rank(item.path.name))
        positions = [index for index, item in enumerate(items) if "deployment" in item.path.parts]
        for position, item in zip(positions, ordered, strict=True):
            items[position] = item


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Record each scenario's outcome and duration, its fixtures' setup included (a failed setup fails it)."""
    report = yield
    results: Results | None = getattr(item.config, "quota_it_results", None)
    if results is not None and report.when in ("setup", "call"):
        seconds = item.stash.get(_SECONDS, 0.0) + report.duration
        item.stash[_SECONDS] = seconds
        if report.when == "call" or report.failed:
            failure = str(report.longrepr)[-2000:] if report.failed else ""
            results.outcome(item.nodeid, report.outcome, seconds, failure)
    return report


def record_servers(harness: Harness, broker_url: str) -> None:
    """The versions of the servers the run used, for the results table."""
    import redis

    postgres = harness.meta.rows("SHOW server_version")[0]["server_version"]
    harness.results.figure("environment", "PostgreSQL", postgres.split()[0])
    harness.results.figure("environment", "Redis", redis.Redis.from_url(broker_url).info("server")["redis_version"])


@pytest.fixture(autouse=True)
def no_run_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a scenario, fail the runs it left unfinished (a failed assertion), so they cannot spill into the next."""
    yield
    if "harness" in request.fixturenames:
        request.getfixturevalue("harness").fail_unfinished_runs()


@pytest.fixture(scope="session")
def results(request: pytest.FixtureRequest) -> Iterator[Results]:
    recorder = Results(RESULTS)
    request.config.quota_it_results = recorder  # type: ignore[attr-defined]
    yield recorder
    recorder.save()


@pytest.fixture(scope="session")
def harness(results: Results) -> Iterator[Harness]:
    """Start the deployment, wait until every process is ready, define the connections; stop it all at the end."""
    started = time.monotonic()
    issued = IssuedSecrets(static={"Sonarly API key": SONARLY_KEY, "Indeed client secret": INDEED_SECRET})
    ROOT.mkdir(parents=True, exist_ok=True)
    with (
        SandboxServer() as sandbox,
        postgres_database(POSTGRES, "quota_it") as metadata_url,
        postgres_database(POSTGRES, "quota_it_warehouse") as warehouse_url,
    ):
        deployment = Deployment(root=ROOT, metadata_url=metadata_url, broker_url="", sandbox_url=sandbox.url)
        deployment.prepare()
        with redis_broker(REDIS, deployment.logs) as broker:
            deployment.broker_url = broker.broker_url
            harness = Harness(deployment, sandbox, warehouse_url, issued, results)
            try:
                harness.start()
                results.figure("startup", "seconds to ready", round(time.monotonic() - started, 1))
                results.figure("startup", "processes", sorted(deployment.processes))
                record_servers(harness, broker.broker_url)
                harness.define_connections(INDEED_CLIENT_ID)
                yield harness
            finally:
                exit_codes = harness.stop()
                results.figure("shutdown", "exit codes", exit_codes)
                results.save()
