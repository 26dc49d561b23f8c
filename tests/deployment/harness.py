"""
What scenarios use: the running deployment, its REST API, its metadata database and the sandbox.

A new scenario needs a few lines: reset the sandbox and set a quota, trigger a DAG run through
the REST API, wait for task states, and read the counters::

    def test_something(harness):
        harness.reset_sandbox()
        harness.sandbox.set_quota("ag_sandbox", used=25, reset_after_first_check=15)
        run_id = harness.api.trigger("prospecting_quota_gate")
        harness.api.wait_for_task(
            "prospecting_quota_gate", run_id, "wait_for_prospecting_quota", {"deferred"}, timeout=120
        )
        trigger = harness.trigger_of("prospecting_quota_gate", run_id)  # who runs it
        harness.api.wait_for_run("prospecting_quota_gate", run_id, timeout=180)
        harness.results.figure("something", "quota requests", harness.quota_requests())
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import psutil

from airflow_provider_quota.sandbox import SandboxClient, SandboxServer
from tests.deployment.cluster import TRIGGERERS, Deployment, log_tail, wait_for
from tests.deployment.metadata import MetadataDatabase, TriggerRow
from tests.deployment.rest import AirflowApi
from tests.deployment.results import Results

#: The DAGs the run expects the dag-processor to serialize: the examples and the harness's own.
EXPECTED_DAGS = {
    "prospecting_quota_gate",
    "prospecting_on_quota_window",
    "indeed_monthly_spend",
    "deployment_gates",
    "deployment_gate_from_trigger",
    "deployment_bad_input",
}
#: Paused until their scenario: the quota window watcher would check the sandbox's quota all along.
PAUSED_AT_START = {"prospecting_on_quota_window"}
#: Seconds within which a job's heartbeat counts as alive for the readiness checks.
ALIVE_WITHIN = 20.0
STARTUP_TIMEOUT = 300.0
SONARLY_ACCOUNT_GROUP = "ag_sandbox"


@dataclass
class IssuedSecrets:
    """The credentials of the run: the static ones, and every access token the sandbox issued."""

    static: dict[str, str]
    access_tokens: set[str] = field(default_factory=set)

    def collect(self, sandbox: SandboxServer) -> None:
        with sandbox.state.lock:
            self.access_tokens.update(sandbox.state.tokens)

    def all(self) -> dict[str, str]:
        tokens = {f"access token {index}": token for index, token in enumerate(sorted(self.access_tokens), 1)}
        return {**self.static, **tokens}


class Harness:
    """
    The deployment under test and the means to drive and observe it.

    :param deployment: the processes and their configuration.
    :param sandbox: the sandbox serving both APIs (in this process, so its issued tokens can be read).
    :param warehouse_url: the PostgreSQL database the spend example writes to.
    :param issued: where the credentials to search for are collected.
    :param results: where scenarios record their figures.
    """

    def __init__(
        self,
        deployment: Deployment,
        sandbox: SandboxServer,
        warehouse_url: str,
        issued: IssuedSecrets,
        results: Results,
    ) -> None:
        self.deployment = deployment
        self.sandbox_server = sandbox
        self.sandbox = SandboxClient(sandbox.url)
        self.warehouse_url = warehouse_url
        self.issued = issued
        self.results = results
        self.api = AirflowApi(deployment.api_url, "admin", deployment.admin_password)
        self.meta = MetadataDatabase(deployment.metadata_url, deployment.fernet_key)
        #: Dumps of the metadata database taken while triggers waited (they are deleted once fired).
        self.metadata_snapshots: dict[str, dict[str, str]] = {}
        issued.static["Airflow admin password"] = deployment.admin_password

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Migrate the metadata database, start every process, and wait until each is ready."""
        self.deployment.airflow("db", "migrate", log_name="db-migrate")
        self.deployment.define_processes()
        self.deployment.start()
        self.wait_until_ready()

    def stop(self) -> dict[str, int]:
        self.issued.collect(self.sandbox_server)
        try:
            return self.deployment.stop_all()
        finally:
            self.meta.close()

    def wait_until_ready(self) -> None:
        """Poll health endpoints and job heartbeats, never sleep a fixed time."""
        self.wait_until("the API server's health endpoint", lambda: self.api.health().get("metadatabase"))
        self.api.login()
        self.wait_until("the scheduler's heartbeat", lambda: self.meta.live_jobs("SchedulerJob", ALIVE_WITHIN))
        self.wait_until("the dag-processor's heartbeat", lambda: self.meta.live_jobs("DagProcessorJob", ALIVE_WITHIN))
        self.wait_for_triggerers(TRIGGERERS)
        self.wait_for_worker()
        self.wait_until("the DAGs serialized by the dag-processor", lambda: self.api.dag_ids() >= EXPECTED_DAGS)
        errors = self.api.import_errors()
        assert errors == [], f"DAG import errors: {errors}"
        for dag_id in EXPECTED_DAGS - PAUSED_AT_START:
            self.api.unpause(dag_id)

    def wait_until(self, what: str, probe: Any, timeout: float = STARTUP_TIMEOUT) -> Any:
        def probe_alive() -> Any:
            self.deployment.check_alive()
            return probe()

        def tails() -> str:
            return "\n".join(
                f"--- {process.name}\n{log_tail(process.log, 15)}" for process in self.deployment.processes.values()
            )

        return wait_for(what, probe_alive, timeout=timeout, on_timeout=tails)

    def wait_for_triggerers(self, names: tuple[str, ...] | list[str]) -> dict[str, int]:
        """Wait until each named triggerer heartbeats; their job ids by name."""
        jobs = self.wait_until(
            f"heartbeats of {', '.join(names)}",
            lambda: (live := self.meta.live_jobs("TriggererJob", ALIVE_WITHIN)) and set(names) <= set(live) and live,
        )
        return {name: jobs[name] for name in names}

    def wait_for_worker(self) -> None:
        self.wait_until("a Celery worker answering ping", lambda: self.celery_app().control.ping(timeout=1.0))

    def celery_app(self) -> Any:
        import celery

        if not hasattr(self, "_celery"):
            self._celery = celery.Celery(broker=self.deployment.broker_url)
        return self._celery

    def worker_active_tasks(self) -> list[dict[str, Any]]:
        """The tasks the Celery workers execute right now (the worker slots in use)."""
        replies = self.celery_app().control.inspect(timeout=2.0).active() or {}
        assert replies, "no Celery worker answered inspect active"
        return [task for tasks in replies.values() for task in tasks]

    def restart(self, name: str, settings: dict[tuple[str, str], str] | None = None) -> None:
        """
        Start a process again (stopping it first if it runs) and wait until it is ready.

        :param name: the process, e.g. ``"triggerer-1"``, ``"worker-1"``, ``"scheduler"``.
        :param settings: Airflow settings to change for it from then on, e.g.
            ``{("scheduler", "use_job_schedule"): "True"}`` for asset-triggered runs.
        """
        process = self.deployment.processes[name]
        if process.running():
            process.terminate()
        for (section, option), value in (settings or {}).items():
            process.env[f"AIRFLOW__{section.upper()}__{option.upper()}"] = value
        process.start()
        if name in TRIGGERERS:
            self.wait_for_triggerers([name])
        elif name.startswith("worker"):
            self.wait_for_worker()
        elif name == "scheduler":
            self.wait_until("the scheduler's heartbeat", lambda: self.meta.live_jobs("SchedulerJob", ALIVE_WITHIN))

    # ------------------------------------------------------------------ connections and sandbox

    def define_connections(self, indeed_client_id: str) -> None:
        """The connections the example DAGs expect, created through the REST API as an operator would."""
        secrets = self.issued.static
        self.api.put_connection(
            "sonarly_default",
            conn_type="sonarly",
            host=self.sandbox_server.url,
            password=secrets["Sonarly API key"],
            extra=json.dumps({"account_group_id": SONARLY_ACCOUNT_GROUP}),
        )
        self.api.put_connection(
            "indeed_default",
            conn_type="indeed",
            host=self.sandbox_server.url,
            login=indeed_client_id,
            password=secrets["Indeed client secret"],
        )
        warehouse = urlsplit(self.warehouse_url)
        self.api.put_connection(
            "warehouse",
            conn_type="postgres",
            host=warehouse.hostname,
            port=warehouse.port or 5432,
            login=warehouse.username,
            schema=warehouse.path.lstrip("/"),
        )

    def reset_sandbox(self) -> None:
        """Back to the sandbox's start-up state, keeping the tokens it issued for the secrets scan."""
        self.issued.collect(self.sandbox_server)
        self.sandbox.reset()

    def fail_unfinished_runs(self) -> list[str]:
        """Mark every queued or running DAG run failed (their deferred tasks' triggers go with them); their ids."""
        runs = self.api.get("/dags/~/dagRuns", params={"state": ["queued", "running"], "limit": 1000})["dag_runs"]
        for run in runs:
            self.api.call(
                "PATCH", f"/dags/{run['dag_id']}/dagRuns/{quote(run['dag_run_id'], safe='')}", json={"state": "failed"}
            )
        return [run["dag_run_id"] for run in runs]

    def quota_requests(self) -> int:
        return self.sandbox.requests_to("sonarly_quota")

    # ------------------------------------------------------------------ triggers and triggerers

    def trigger_of(self, dag_id: str, run_id: str, *, timeout: float = 60.0, not_on: str | None = None) -> TriggerRow:
        """The trigger of the run's deferred task, once a live triggerer other than ``not_on`` runs it."""

        def assigned() -> TriggerRow | None:
            rows = self.meta.triggers(dag_id, run_id)
            if len(rows) == 1 and rows[0].triggerer_hostname not in (None, not_on):
                return rows[0]
            return None

        return self.wait_until(f"a triggerer running the trigger of {dag_id} {run_id}", assigned, timeout=timeout)

    def snapshot_metadata(self, label: str) -> None:
        """Dump the metadata database now, for the secrets scan (trigger rows only live while they wait)."""
        self.metadata_snapshots[label] = self.meta.dump()

    def metadata_channels(self) -> dict[str, str]:
        """Every snapshot's text per table: ``metadata: <table>``."""
        channels: dict[str, list[str]] = {}
        for dump in self.metadata_snapshots.values():
            for table, text in dump.items():
                channels.setdefault(f"metadata: {table}", []).append(text)
        return {channel: "\n".join(texts) for channel, texts in channels.items()}

    def process_usage(self, name: str) -> dict[str, float]:
        """
        Memory and CPU of a process and its children (a triggerer's trigger runner and log server).

        ``uss_mib`` counts the pages only these processes hold (what stopping them frees);
        ``rss_mib`` adds the shared ones, each process counting them again.
        """
        root = psutil.Process(self.deployment.processes[name].pid)
        rss = uss = cpu = 0.0
        for process in [root, *root.children(recursive=True)]:
            try:
                memory = process.memory_full_info()
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            rss += memory.rss
            uss += memory.uss
            cpu += times.user + times.system
        return {"rss_mib": round(rss / 2**20, 1), "uss_mib": round(uss / 2**20, 1), "cpu_seconds": round(cpu, 2)}
