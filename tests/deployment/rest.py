"""Airflow's public REST API (``/api/v2``), as an operator or a CI job drives it: a JWT, then JSON."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

#: A bound on one request, not on a scenario: generous, because a machine short of CPU or memory
#: was seen to stall every process of the deployment for over two minutes.
REQUEST_TIMEOUT = 300.0


class ApiError(AssertionError):
    """The API answered an unexpected status."""


class AirflowApi:
    """
    A client of one API server.

    :param url: the API server's base URL.
    :param username: a SimpleAuthManager user.
    :param password: its password.
    """

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._http = requests.Session()

    def login(self) -> None:
        """Trade the user's password for a JWT, sent as a bearer token from then on."""
        answer = self._http.post(f"{self.url}/auth/token", json=self._credentials, timeout=REQUEST_TIMEOUT)
        if answer.status_code not in (200, 201):
            raise ApiError(f"POST /auth/token: {answer.status_code} {answer.text[:300]}")
        self._http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """One request to ``/api/v2<path>``; its JSON body (None for 204)."""
        answer = self._http.request(method, f"{self.url}/api/v2{path}", timeout=REQUEST_TIMEOUT, **kwargs)
        if answer.status_code not in expect:
            raise ApiError(f"{method} {path}: {answer.status_code} {answer.text[:1000]}")
        return None if answer.status_code == 204 or not answer.content else answer.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    # ------------------------------------------------------------------ health, DAGs, connections

    def health(self) -> dict[str, Any]:
        return dict(self._http.get(f"{self.url}/api/v2/monitor/health", timeout=REQUEST_TIMEOUT).json())

    def dag_ids(self) -> set[str]:
        return {dag["dag_id"] for dag in self.get("/dags", params={"limit": 1000})["dags"]}

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.get("/importErrors")["import_errors"])

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def put_connection(self, conn_id: str, **fields: Any) -> None:
        """Create the connection, or replace one of the same id."""
        self.call("DELETE", f"/connections/{conn_id}", expect=(204, 404))
        self.call("POST", "/connections", json={"connection_id": conn_id, **fields}, expect=(201,))

    def test_connection(self, conn_id: str, **fields: Any) -> dict[str, Any]:
        """``POST /connections/test``: what the Test button asks; ``{"status": bool, "message": str}``."""
        return dict(self.call("POST", "/connections/test", json={"connection_id": conn_id, **fields}))

    # ------------------------------------------------------------------ runs and task instances

    def trigger(self, dag_id: str, *, logical_date: datetime | None = None, **body: Any) -> str:
        """Create a DAG run; its run id."""
        payload = {"logical_date": logical_date.isoformat() if logical_date else None, **body}
        return str(self.call("POST", f"/dags/{dag_id}/dagRuns", json=payload)["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"))

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """Every task instance of a run (mapped ones included), optionally of one task."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.get(
                f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances",
                params={"limit": 100, "offset": len(found), **({"task_id": task_id} if task_id else {})},
            )
            found += page["task_instances"]
            if len(found) >= page["total_entries"] or not page["task_instances"]:
                return found

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        return dict(self.get(path if map_index < 0 else f"{path}/{map_index}"))

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.get(path, params={"map_index": map_index, "deserialize": True})["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The task's log of one try, as the UI shows it (one line per event, message text only)."""
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
        body = self.get(path, params={"map_index": map_index, "full_content": True})
        content = body.get("content", [])
        lines = []
        for entry in content if isinstance(content, list) else [content]:
            if isinstance(entry, dict):
                lines.append(" ".join(str(value) for value in entry.values()))
            else:
                lines.append(str(entry))
        return "\n".join(lines)

    def clear(self, dag_id: str, run_id: str, task_ids: list[str] | list[tuple[str, int]]) -> list[dict[str, Any]]:
        """Clear task instances of one run (``(task_id, map_index)`` for mapped ones): they run again."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": task_ids,
            "only_failed": False,
            "reset_dag_runs": True,
        }
        return list(self.call("POST", f"/dags/{dag_id}/clearTaskInstances", json=body)["task_instances"])

    def create_backfill(self, dag_id: str, start: datetime, end: datetime, **options: Any) -> dict[str, Any]:
        body = {"dag_id": dag_id, "from_date": start.isoformat(), "to_date": end.isoformat(), **options}
        return dict(self.call("POST", "/backfills", json=body))

    def backfill(self, backfill_id: int) -> dict[str, Any]:
        return dict(self.get(f"/backfills/{backfill_id}"))

    def backfill_runs(self, dag_id: str, backfill_id: int) -> list[dict[str, Any]]:
        runs = self.get(f"/dags/{dag_id}/dagRuns", params={"limit": 100, "run_type": "backfill"})["dag_runs"]
        return [run for run in runs if run.get("backfill_id") in (None, backfill_id)]

    def pool(self, name: str = "default_pool") -> dict[str, Any]:
        return dict(self.get(f"/pools/{name}"))

    # ------------------------------------------------------------------ waiting

    def wait_for_run(
        self, dag_id: str, run_id: str, *, timeout: float, states: set[str] | None = None
    ) -> dict[str, Any]:
        """Poll until the run is finished (or in one of ``states``); the run."""
        wanted = states or {"success", "failed"}
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in wanted:
                return run
            if time.monotonic() > deadline:
                tis = {
                    ti["task_id"] + f"[{ti['map_index']}]": ti["state"] for ti in self.task_instances(dag_id, run_id)
                }
                raise AssertionError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f} s: {tis}")
            time.sleep(1)

    def wait_for_task(
        self, dag_id: str, run_id: str, task_id: str, states: set[str], *, timeout: float, map_index: int = -1
    ) -> dict[str, Any]:
        """Poll until a task instance is in one of ``states`` (a mapped one may not exist yet); the task instance."""
        deadline = time.monotonic() + timeout
        state = "not created yet"
        while True:
            try:
                ti = self.task_instance(dag_id, run_id, task_id, map_index)
            except ApiError as exc:
                if " 404 " not in str(exc):
                    raise
            else:
                state = ti["state"]
                if state in states:
                    return ti
            if time.monotonic() > deadline:
                raise AssertionError(f"{dag_id}.{task_id}[{map_index}] of {run_id} still {state} after {timeout:.0f} s")
            time.sleep(0.5)
