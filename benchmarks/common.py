"""
Shared helpers of the benchmarks: a throwaway Airflow home, connections, the sandbox, subprocesses.

Every scenario module runs as ``python -m benchmarks.<name> ...`` in a fresh process started by
:func:`run_scenario`, and prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

SONARLY_KEY = "sk_test_sandbox"
ACCOUNT_GROUP = "ag_sandbox"
INDEED_CLIENT_ID = "sandbox-client-id"
INDEED_SECRET = "sandbox-client-secret"  # noqa: S105 (the sandbox's public test client)
POSTGRES_URL = os.environ.get("QUOTA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

#: The quota endpoint of the Sonarly API, relative to the base URL (what the anchor's HttpSensor calls).
QUOTA_ENDPOINT = f"v1/accounts/{ACCOUNT_GROUP}/prospecting/quota"


def airflow_home() -> str:
    """Point Airflow at a private, throwaway home; call before anything imports airflow."""
    if "QUOTA_BENCH_AIRFLOW_HOME" not in os.environ:
        home = tempfile.mkdtemp(prefix="quota-bench-airflow-home-")
        os.environ["QUOTA_BENCH_AIRFLOW_HOME"] = home
    home = os.environ["QUOTA_BENCH_AIRFLOW_HOME"]
    os.environ["AIRFLOW_HOME"] = home
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(home) / "dags")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    return home


def set_connection(conn_id: str, **fields: Any) -> str:
    """Define an Airflow connection through an ``AIRFLOW_CONN_<ID>`` JSON environment variable."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)
    return conn_id


def define_connections(sandbox_url: str) -> None:
    """The provider's connections and the anchor's plain ``http`` connections, all to the sandbox."""
    set_connection(
        "sonarly_default",
        conn_type="sonarly",
        host=sandbox_url,
        password=SONARLY_KEY,
        extra={"account_group_id": ACCOUNT_GROUP},
    )
    set_connection(
        "indeed_default",
        conn_type="indeed",
        host=sandbox_url,
        login=INDEED_CLIENT_ID,
        password=INDEED_SECRET,
    )
    # The anchor: an ``http`` connection whose extra is sent as headers by HttpHook / HttpAsyncHook,
    # which is how the HTTP provider's docs tell users to pass an API key.
    set_connection(
        "sonarly_http",
        conn_type="http",
        host=sandbox_url,
        extra={"Authorization": f"Bearer {SONARLY_KEY}", "Accept": "application/json"},
    )
    set_connection("indeed_http", conn_type="http", host=sandbox_url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sandbox_process() -> Iterator[str]:
    """The sandbox in its own process (``python -m airflow_provider_quota.sandbox``); yields its URL."""
    import requests

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_quota.sandbox", "--port", str(port), "--log-level", "error"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/_sandbox/stats", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox process did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def emit(result: dict[str, Any]) -> None:
    """Print a scenario's result as the last line of stdout, for :func:`run_scenario`."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


def run_scenario(module: str, *args: str, timeout: float = 900) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> args...`` in a fresh process and return its JSON result."""
    env = dict(os.environ)
    env.pop("QUOTA_BENCH_AIRFLOW_HOME", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = "\n".join(completed.stderr.strip().splitlines()[-30:])
        raise RuntimeError(f"benchmarks.{module} {' '.join(args)} failed ({completed.returncode}):\n{tail}")
    return dict(json.loads(lines[-1]))


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def run_trigger_in_simulated_time(trigger: Any, traveller: Any) -> dict[str, Any]:
    """Run a provider trigger to its first event, each of its sleeps moving time-machine's clock instead of waiting."""
    import asyncio

    import airflow_provider_quota.triggers.base as trigger_base

    async def shifting_sleep(seconds: float) -> None:
        traveller.shift(seconds)

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise RuntimeError("the trigger ended without an event")

    original_sleep = trigger_base._sleep
    trigger_base._sleep = shifting_sleep  # type: ignore[assignment]
    try:
        return asyncio.run(first_event())
    finally:
        trigger_base._sleep = original_sleep  # type: ignore[assignment]


def quiet_logging() -> None:
    """Keep per-trigger and per-request log lines out of the measurements (the same for both sides)."""
    import logging

    logging.disable(logging.INFO)
