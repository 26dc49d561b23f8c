"""
The Quotas page inside a real Airflow API app (``create_app``: plugins, auth manager, middlewares), for tests.

Shared by the page's unit tests and the reliability suite's secrets scan.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow_provider_quota.sandbox import SandboxClient, SandboxServer
from tests.conftest import REPO, sonarly_at

PAGE = "/quotas/"
ENDPOINTS = [PAGE, "/quotas/api/quotas", "/quotas/api/gates", "/quotas/api/spend"]
GATE_DAG_ID = "prospecting_quota_gate"  # the example DAG
GATE_TASK_ID = "wait_for_prospecting_quota"
#: Hostile names for the escaping tests: HTML built from them must show them, never run them.
HOSTILE_GROUP = "<script>alert('group')</script>"
HOSTILE_LIST_TYPE = '"><img src=x onerror=alert(1)>'

_CLIENT: Any = None


def airflow_api() -> Any:
    """A TestClient of the whole Airflow API app of this process (built once: it loads every plugin)."""
    global _CLIENT
    if _CLIENT is None:
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        _CLIENT = TestClient(create_app(apps="core"))
    return _CLIENT


def token(role: str | None) -> str:
    """A JWT of Airflow's auth manager (SimpleAuthManager) for a user with ``role`` (ADMIN, VIEWER...)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=f"user-{role}", role=role)))


class QuotasPage:
    """The page's app as the API server serves it, rebuilt for each test (a new cache, config read anew)."""

    def __init__(self) -> None:
        from airflow_provider_quota.plugins.quotas import QuotasPlugin

        self.client = airflow_api()
        self._lazy = QuotasPlugin.fastapi_apps[0]["app"]
        self._lazy.app = None

    def get(self, path: str = PAGE, *, role: str | None = "ADMIN", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token(role)}"} if role else {}
        return self.client.get(path, headers=headers, **kwargs)

    def html(self) -> str:
        answer = self.get()
        assert answer.status_code == 200, answer.text
        return str(answer.text)

    @property
    def cache(self) -> Any:
        assert self._lazy.app is not None, "no request has reached the page yet"
        return self._lazy.app.state.quota_cache


def run_gate_dag(sandbox_server: SandboxServer) -> tuple[str, str]:
    """
    Run the example DAG ``prospecting_quota_gate`` twice with dag.test() on a fresh quota (its gate passes
    at once): the ids of the two runs, real rows for :func:`waiting` to put back to waiting.
    """
    import pytest
    from airflow.dag_processing.dagbag import DagBag

    SandboxClient(sandbox_server.url).reset()
    dag = DagBag(dag_folder=str(REPO / "example_dags")).dags[GATE_DAG_ID]
    with pytest.MonkeyPatch.context() as patch:
        sonarly_at(patch, sandbox_server.url)
        runs = [dag.test(), dag.test()]
    assert [run.state for run in runs] == ["success", "success"]
    return str(runs[0].run_id), str(runs[1].run_id)


@contextmanager
def waiting(
    runs: tuple[str, str], *, reset_at: datetime, reschedule_at: datetime, group: str, list_type: str
) -> Iterator[None]:
    """
    Put the gates of the two runs back to waiting, as the scheduler leaves them, and then back to success.

    The first run's gate is deferred on a real trigger row (its kwargs encrypted by Airflow) for
    ``group`` and ``list_type``, with ``min_remaining`` 7; the second one's is up for reschedule
    until ``reschedule_at`` (its parameters: its rendered template fields).
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger

    trigger = SonarlyQuotaResetTrigger(
        sonarly_conn_id="sonarly_default",
        account_group_id=group,
        list_type=list_type,
        min_remaining=7,
        reset_at=reset_at,
        poke_interval=60.0,
    )
    query = select(TaskInstance).where(
        TaskInstance.dag_id == GATE_DAG_ID, TaskInstance.task_id == GATE_TASK_ID, TaskInstance.run_id.in_(runs)
    )
    with create_session() as session:
        gates = {ti.run_id: ti for ti in session.scalars(query)}
        deferred, rescheduled = gates[runs[0]], gates[runs[1]]
        row = Trigger.from_object(trigger)
        session.add(row)
        session.flush()
        deferred.state, deferred.trigger_id = "deferred", row.id
        rescheduled.state = "up_for_reschedule"
        now = datetime.now(timezone.utc)
        session.add(TaskReschedule(rescheduled.id, now - timedelta(seconds=2), now, reschedule_at))
        rescheduled_id = rescheduled.id
    try:
        yield
    finally:
        with create_session() as session:
            for ti in session.scalars(query):
                ti.state, ti.trigger_id = "success", None
            session.flush()  # before the trigger goes: deleting it cascades to the task instances pointing at it
            session.execute(delete(Trigger).where(Trigger.id == row.id))
            session.execute(delete(TaskReschedule).where(TaskReschedule.ti_id == rescheduled_id))


def recent_months(count: int) -> list[str]:
    """The ``count`` complete months before the current one, oldest first, as ``YYYY-MM``."""
    first = date.today().replace(day=1)
    months = []
    for _ in range(count):
        first = (first - timedelta(days=1)).replace(day=1)
        months.append(f"{first:%Y-%m}")
    return months[::-1]


def write_spend(sql_conn_id: str, table: str, employers: list[str], months: list[str]) -> None:
    """Extract ``months`` of each employer from the sandbox into ``table`` with IndeedQuotaUsageOperator."""
    from airflow_provider_quota.operators.indeed import IndeedQuotaUsageOperator

    for employer in employers:
        IndeedQuotaUsageOperator(
            task_id=f"extract_{employer}",
            employer_id=employer,
            month=list(months),
            sql_conn_id=sql_conn_id,
            table=table,
            create_table=True,
        ).execute({})
