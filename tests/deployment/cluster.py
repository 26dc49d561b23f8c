"""
The Airflow processes of the deployment: configuration, start, stop, crash, readiness.

Every process runs in a session of its own (its own process group), with its own log file
under ``<root>/logs/``, so a crash can be simulated with ``kill -9`` of the whole group (as
when its host or container dies) and everything the run started can be stopped by its id.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.deployment.services import free_port

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"
HARNESS_DAGS = Path(__file__).resolve().parent / "dags"
_FAILOVER = "failover within a test's time"
_CRASH = "a crashed worker's task retried within a test's time"
_NO_CATCHUP = (
    "runs come from the REST API and backfills only: unpausing the catchup=True spend example starts "
    "no catchup (this also stops asset-triggered runs)"
)
#: The settings the run changes from Airflow's defaults: (this run, Airflow's default, why). Every
#: process gets them; docs/deployment.md shows this table.
RUN_SETTINGS = {
    ("triggerer", "job_heartbeat_sec"): ("2", "5", _FAILOVER),
    ("triggerer", "triggerer_health_check_threshold"): ("15", "30", _FAILOVER),
    ("scheduler", "task_instance_heartbeat_timeout"): ("30", "300", _CRASH),
    ("scheduler", "task_instance_heartbeat_timeout_detection_interval"): ("5", "10", _CRASH),
    ("core", "default_task_retries"): ("1", "0", "a crashed worker's task is retried at all"),
    ("core", "default_task_retry_delay"): ("5", "300", _CRASH),
    ("core", "parallelism"): ("64", "32", "the fleet's gates reach the worker sooner"),
    ("core", "test_connection"): ("Enabled", "Disabled", "the connection Test scenario"),
    ("scheduler", "use_job_schedule"): ("False", "True", _NO_CATCHUP),
}
CELERY_CONCURRENCY = 16  # Airflow's default [celery] worker_concurrency
TRIGGERERS = ("triggerer-1", "triggerer-2")
HOSTNAME_MODULE = '''"""A triggerer of the deployment reports its name as its host name, as separate hosts would."""

import os
import socket


def hostname() -> str:
    return os.environ.get("QUOTA_IT_HOSTNAME") or socket.getfqdn()
'''


class NotReadyError(AssertionError):
    """A readiness wait ran out of time."""


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """
    Poll ``probe`` until it returns something truthy; return it. Never a fixed sleep.

    :param what: what is awaited, for the error.
    :param probe: returns the awaited value, or None/False while not there yet; exceptions count as not yet.
    :param timeout: seconds before :class:`NotReadyError`.
    :param on_timeout: more context for the error (a log tail...).
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            context = on_timeout() if on_timeout else ""
            raise NotReadyError(f"not ready after {timeout:.0f} s: {what} {last_error}\n{context}".rstrip())
        time.sleep(interval)


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class AirflowProcess:
    """One long-running process of the deployment."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: False once the run stopped or crashed it on purpose: then its death is no failure.
    should_run: bool = False

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        self.should_run = True
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts} of {self.name}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """``kill -9`` of the process and all its children (its process group): a crash."""
        self.should_run = False
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> int:
        """``SIGTERM`` to the process, as a service manager stops it; ``kill -9`` of what is left after ``timeout``."""
        self.should_run = False
        if self.popen is None:
            return 0
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # Children the process left behind (pool workers, log servers...) go with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(timeout=30)
        return int(self.popen.returncode or 0)


@dataclass
class Deployment:
    """
    A real Airflow deployment on loopback: configuration, folders and processes.

    :param root: the run's folder (``.integration``): Airflow home, DAGs folder, logs.
    :param metadata_url: the metadata database (``postgresql://``), created for this run.
    :param broker_url: Celery's broker (``redis://host:port/db``).
    :param sandbox_url: the sandbox serving both APIs.
    """

    root: Path
    metadata_url: str
    broker_url: str
    sandbox_url: str
    airflow_bin: Path = field(default_factory=lambda: Path(sys.executable).parent / "airflow")
    api_port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    fernet_key: str = field(default_factory=lambda: _fernet_key())
    #: Signs the REST API's and the Execution API's tokens: one value for every process.
    shared_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    #: The worker's log server; each triggerer serves its logs on a port of its own (one host here).
    worker_log_port: int = field(default_factory=free_port)
    trigger_log_ports: dict[str, int] = field(default_factory=lambda: {name: free_port() for name in TRIGGERERS})
    processes: dict[str, AirflowProcess] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def dags(self) -> Path:
        return self.root / "dags"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def prepare(self) -> None:
        """A fresh Airflow home, DAGs folder (the example DAGs and the harness's) and logs folder."""
        shutil.rmtree(self.root, ignore_errors=True)
        for folder in (self.home, self.dags, self.logs, self.home / "pythonpath"):
            folder.mkdir(parents=True)
        for dag_file in [*EXAMPLE_DAGS.glob("*.py"), *HARNESS_DAGS.glob("*.py")]:
            shutil.copy2(dag_file, self.dags / dag_file.name)
        (self.home / "pythonpath" / "quota_it_hostname.py").write_text(HOSTNAME_MODULE)
        (self.home / "passwords.json").write_text(f'{{"admin": "{self.admin_password}"}}\n')

    def environment(self, name: str = "") -> dict[str, str]:
        """
        The environment of an Airflow process: the same configuration everywhere, as in production.

        A triggerer reports its name as its host name, as if each ran on a host of its own, so the
        metadata database tells which one runs a trigger; it also gets a log server port of its own.
        """
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        sql = self.metadata_url.replace("postgresql://", "postgresql+psycopg2://", 1)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONPATH": str(self.home / "pythonpath"),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "quota_it_hostname.hostname",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.metadata_url}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CELERY_CONCURRENCY),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": self.shared_secret,
                "AIRFLOW__API_AUTH__JWT_SECRET": self.shared_secret,
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs / "airflow"),
                "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(
                    self.logs / "airflow" / "dag_processor"
                ),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
            }
        )
        for (section, option), (value, _default, _why) in RUN_SETTINGS.items():
            env[f"AIRFLOW__{section.upper()}__{option.upper()}"] = value
        if name in self.trigger_log_ports:
            env["QUOTA_IT_HOSTNAME"] = name
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(self.trigger_log_ports[name])
        return env

    def airflow(
        self, *args: str, timeout: float = 600, log_name: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` command to its end; its output goes to ``logs/<log_name>.log``."""
        log = self.logs / f"{log_name or args[0]}.log"
        with log.open("a") as out:
            return subprocess.run(
                [str(self.airflow_bin), *args],
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=True,
            )

    def define_processes(self) -> None:
        """The long-running processes, each with its own log file."""
        airflow = str(self.airflow_bin)
        commands = {
            "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)],
            "scheduler": [airflow, "scheduler"],
            "dag-processor": [airflow, "dag-processor"],
            **{name: [airflow, "triggerer"] for name in TRIGGERERS},
            "worker-1": [
                airflow,
                "celery",
                "worker",
                "--concurrency",
                str(CELERY_CONCURRENCY),
                "--celery-hostname",
                "worker-1@%h",
                "--without-gossip",
                "--without-mingle",
            ],
        }
        for name, argv in commands.items():
            self.processes[name] = AirflowProcess(name, argv, self.environment(name), self.logs / f"{name}.log")

    def start(self, *names: str) -> None:
        for name in names or tuple(self.processes):
            self.processes[name].start()

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every process this run started (workers last), then kill what is left; their exit codes."""
        order = sorted(self.processes.values(), key=lambda process: process.name.startswith("worker"))
        return {process.name: process.terminate() for process in order}

    def check_alive(self) -> None:
        """Fail loudly, with its log, when a process that should run has died."""
        for process in self.processes.values():
            if process.should_run and not process.running():
                code = process.popen.returncode if process.popen else None
                raise AssertionError(f"{process.name} exited with {code}:\n{log_tail(process.log)}")


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
