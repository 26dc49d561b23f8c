"""
A real Airflow API server with the provider installed, the sandbox, and headless Chromium.

The session starts ``airflow api-server`` on a free loopback port with its own throwaway
``AIRFLOW_HOME`` (metadata database migrated by ``airflow db migrate``), every user an admin
(SimpleAuthManager) and connection testing enabled. The browser is Debian's ``/usr/bin/chromium``
(``apt-get install -y chromium chromium-driver``) driven by Playwright; no browser is downloaded.
Without it the tests skip with the reason (a failure under ``CI=true``, see tests/conftest.py).

The Quotas page tests also start ``airflow scheduler`` (LocalExecutor), ``airflow dag-processor`` and
``airflow triggerer`` on the same home (:func:`airflow_workers`), so that their gates really defer and
wait; every process reads the sandbox through ``AIRFLOW_CONN_SONARLY_DEFAULT`` and ``INDEED_DEFAULT``,
and the page's Indeed section reads ``quota_warehouse``, a SQLite file in the home.

``QUOTA_UI_CHECK_AIRFLOW_URL=http://127.0.0.1:PORT`` reuses an API server started the same way
(connection testing enabled, everyone admin) instead of starting one: for working on the tests.

Screenshots go to ``.ui-check/``. With ``QUOTA_UI_CHECK_UPDATE_DOCS=1`` the form and success screenshots are
also copied to ``docs/img/`` (off by default, so a run does not rewrite tracked files).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_quota.sandbox import SandboxServer
from tests.conftest import INDEED_CLIENT_ID, INDEED_SECRET, REPO, SONARLY_KEY

CHROMIUM = os.environ.get("QUOTA_UI_CHECK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / ".ui-check"
DOCS_IMG = REPO / "docs" / "img"
UPDATE_DOCS = os.environ.get("QUOTA_UI_CHECK_UPDATE_DOCS", "") == "1"
# For working on the tests: an API server already running (as the fixture starts it) instead of a new one.
REUSE_URL = os.environ.get("QUOTA_UI_CHECK_AIRFLOW_URL", "")
# Generous: two shared cores, a cold React bundle, a first hook_meta call that imports every provider.
STARTUP_TIMEOUT = 300.0
UI_TIMEOUT_MS = 90_000


@dataclass(frozen=True)
class AirflowUi:
    url: str
    home: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def forget_connection(self, conn_id: str) -> None:
        """Delete a connection left by an earlier run on a reused server (404 when there is none)."""
        answer = requests.delete(f"{self.url}/api/v2/connections/{conn_id}", timeout=30)
        assert answer.status_code in (204, 404), answer.status_code


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _airflow_env(home: Path, port: int, sandbox_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    dags = home / "dags"
    dags.mkdir(exist_ok=True)
    env.update(
        {
            # the sandbox and the warehouse, for the API server (Quotas page), the workers and the triggerer
            "AIRFLOW_CONN_SONARLY_DEFAULT": json.dumps(
                {
                    "conn_type": "sonarly",
                    "host": sandbox_url,
                    "password": SONARLY_KEY,
                    "extra": {"account_group_id": "ag_sandbox"},
                }
            ),
            "AIRFLOW_CONN_INDEED_DEFAULT": json.dumps(
                {
                    "conn_type": "indeed",
                    "host": sandbox_url,
                    "login": INDEED_CLIENT_ID,
                    "password": INDEED_SECRET,
                    "extra": {"employer_id": "emp-acme"},
                }
            ),
            "AIRFLOW_CONN_QUOTA_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(home / "warehouse.db")}),
            "AIRFLOW__QUOTA__SPEND_CONN_ID": "quota_warehouse",
            # the screenshots follow the sandbox's state within a second
            "AIRFLOW__QUOTA__UI_CACHE_SECONDS": "1",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": Fernet.generate_key().decode(),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "PYTHONWARNINGS": "ignore",
        }
    )
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the API server we started: its own process group, politely first."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _wait_until_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until the API server serves the UI and both connection types (readiness, not an assertion)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"airflow api-server exited with {proc.returncode}:\n{_log_tail(log)}")
        try:
            types = {
                hook["connection_type"] for hook in requests.get(f"{url}/ui/connections/hook_meta", timeout=30).json()
            }
            if {"sonarly", "indeed"} <= types:
                return
            last_error = "hook_meta lists neither sonarly nor indeed"
        except (requests.RequestException, ValueError, TypeError, KeyError) as exc:
            last_error = type(exc).__name__
        time.sleep(1)
    pytest.fail(f"airflow api-server not ready after {STARTUP_TIMEOUT:.0f} s ({last_error}):\n{_log_tail(log)}")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium chromium-driver")
    return CHROMIUM


@pytest.fixture(scope="session")
def airflow_ui(chromium_path: str, sandbox_server: SandboxServer) -> Iterator[AirflowUi]:
    """``airflow api-server`` on a free loopback port, with a freshly migrated metadata database."""
    if REUSE_URL:
        yield AirflowUi(url=REUSE_URL.rstrip("/"), home=Path(), log=Path())
        return
    home = Path(tempfile.mkdtemp(prefix="quota-ui-check-airflow-home-"))
    port = _free_loopback_port()
    env = _airflow_env(home, port, sandbox_server.url)
    log = home / "api-server.log"
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if migrate.returncode != 0:
        pytest.fail(f"airflow db migrate failed ({migrate.returncode}):\n{migrate.stderr[-4000:]}")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, proc, log)
        yield AirflowUi(url=url, home=home, log=log, env=env)
    finally:
        _stop(proc)
        shutil.rmtree(home, ignore_errors=True)


#: The processes that run DAGs, beside the API server; the health endpoint reports each of them.
WORKER_COMMANDS = {"scheduler": ["scheduler"], "dag_processor": ["dag-processor"], "triggerer": ["triggerer"]}
#: A second gate, beside the example DAG's deferrable one: in reschedule mode, on another account group.
GROWTH_GATE_DAG = """
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor

with DAG("prospecting_growth_team", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):
    SonarlyQuotaSensor(
        task_id="wait_for_growth_quota",
        account_group_id="ag_growth",
        list_type="SALES_NAVIGATOR",
        min_remaining=5,
        mode="reschedule",
        timeout=6 * 3600,
    )
"""


@pytest.fixture(scope="session")
def airflow_workers(airflow_ui: AirflowUi) -> Iterator[AirflowUi]:
    """
    ``airflow scheduler``, ``dag-processor`` and ``triggerer`` on the API server's home, once all report healthy.

    Its DAGs: the example ``prospecting_quota_gate`` (a deferrable gate on the connection's ag_sandbox)
    and ``prospecting_growth_team`` (a gate in reschedule mode on ag_growth).
    """
    if REUSE_URL:
        pytest.skip("QUOTA_UI_CHECK_AIRFLOW_URL: a reused API server has no scheduler or triggerer of ours")
    dags = airflow_ui.home / "dags"
    shutil.copyfile(REPO / "example_dags" / "prospecting_quota_gate.py", dags / "prospecting_quota_gate.py")
    (dags / "prospecting_growth_team.py").write_text(GROWTH_GATE_DAG)
    procs = []
    try:
        for name, command in WORKER_COMMANDS.items():
            with (airflow_ui.home / f"{name}.log").open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "airflow", *command],
                        env=airflow_ui.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for (name, _), proc in zip(WORKER_COMMANDS.items(), procs, strict=True):
                if proc.poll() is not None:
                    pytest.fail(
                        f"airflow {name} exited with {proc.returncode}:\n{_log_tail(airflow_ui.home / f'{name}.log')}"
                    )
            health = requests.get(f"{airflow_ui.url}/api/v2/monitor/health", timeout=30).json()
            if all(health.get(name, {}).get("status") == "healthy" for name in WORKER_COMMANDS):
                break
            time.sleep(1)
        else:
            pytest.fail(f"scheduler, dag processor and triggerer not healthy after {STARTUP_TIMEOUT:.0f} s: {health}")
        yield airflow_ui
    finally:
        for proc in procs:
            _stop(proc)


def _port_zero_is_rejected(url: str) -> bool:
    """
    Whether this API server rejects the ``"port": 0`` its own UI sends to test a connection without a port.

    The connections list's Test button posts ``port: Number(connection.port)``, i.e. 0 for a stored NULL,
    and Airflow 3.3.2's ``POST /api/v2/connections/test`` takes 0 for "another port than the stored one"
    and answers 400 "Bad Request" for every connection without a port, whatever its type (upstream bug,
    fixed by apache/airflow#73298, which treats 0 as blank). Probed with a throwaway ``generic`` connection.
    """
    probe = f"{url}/api/v2/connections/quota_ui_check_port_probe"
    body = {"connection_id": "quota_ui_check_port_probe", "conn_type": "generic"}
    with requests.Session() as http:
        http.delete(probe, timeout=30)
        http.post(f"{url}/api/v2/connections", json=body, timeout=30).raise_for_status()
        try:
            answer = http.post(
                f"{url}/api/v2/connections/test", json={**body, "port": 0, "password": "***"}, timeout=60
            )
        finally:
            http.delete(probe, timeout=30)
    return answer.status_code == 400 and "differs from the stored connection" in answer.text


@pytest.fixture(scope="session")
def browser_context(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    SCREENSHOTS.mkdir(exist_ok=True)
    profile = tempfile.mkdtemp(prefix="quota-ui-check-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=chromium_path,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1280, "height": 1000},
            )
            context.set_default_timeout(UI_TIMEOUT_MS)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def port_zero_workaround(airflow_ui: AirflowUi) -> bool:
    """Whether the Test requests' ``"port": 0`` must be sent as null (see :func:`_port_zero_is_rejected`)."""
    needed = _port_zero_is_rejected(airflow_ui.url)
    if needed:
        warnings.warn(
            "this Airflow answers 400 to the port 0 its UI sends when testing a connection without a port "
            "(apache/airflow#73298): the UI check sends that one field as null in the Test request",
            UserWarning,
            stacklevel=1,
        )
    return needed


@pytest.fixture
def page(browser_context: Any, airflow_ui: AirflowUi, port_zero_workaround: bool) -> Iterator[Any]:
    page = browser_context.new_page()
    if port_zero_workaround:

        def blank_port_zero(route: Any) -> None:
            body = json.loads(route.request.post_data or "{}")
            if body.get("port") == 0:
                body["port"] = None
            route.continue_(post_data=json.dumps(body))

        page.route("**/api/v2/connections/test", blank_port_zero)
    try:
        yield page
    finally:
        page.close()


def save_screenshot(page: Any, name: str, *, docs: bool = False, full_page: bool = False) -> Path:
    """Save ``.ui-check/<name>.png``; with ``docs`` and QUOTA_UI_CHECK_UPDATE_DOCS=1, copy it to docs/img/."""
    path = SCREENSHOTS / f"{name}.png"
    # Finished animations: a toast is shown where it settles, not halfway through sliding in.
    page.screenshot(path=str(path), animations="disabled", full_page=full_page)
    if docs and UPDATE_DOCS:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / path.name)
    return path
