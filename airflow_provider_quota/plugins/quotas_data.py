"""
What the Quotas page reads: Sonarly connections, the gates waiting on a quota, the quotas, Indeed spend.

API server only: it reads the metadata database through Airflow's ORM models. Quota reads cost
API requests, so :class:`QuotaCache` keeps each answer (or error) for a period.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from airflow.models.connection import Connection
from airflow.models.renderedtifields import RenderedTaskInstanceFields
from airflow.models.taskinstance import TaskInstance
from airflow.models.taskreschedule import TaskReschedule
from airflow.models.trigger import Trigger
from airflow.sdk import BaseHook
from sqlalchemy import select
from sqlalchemy.orm import Session

SENSOR = "SonarlyQuotaSensor"
WAITING_STATES = ("deferred", "up_for_reschedule")
#: A page fails fast: one attempt, short timeouts (the cache keeps an error for its period too).
UI_HOOK_PARAMS = {"max_attempts": 1, "connect_timeout": 5.0, "read_timeout": 10.0, "deadline": 10.0}
MAX_ERROR_CHARS = 500

#: (Sonarly connection id, account group or None for the connection's default, list type or None).
QuotaKey = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class Gate:
    """A ``SonarlyQuotaSensor`` task instance waiting (deferred or up for reschedule) on a quota."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str
    sonarly_conn_id: str
    account_group_id: str | None
    list_type: str | None
    min_remaining: Any
    next_check: datetime | None


@dataclass(frozen=True)
class QuotaReading:
    """One quota answer (``ProspectingQuota.model_dump(mode="json")``), or the error that replaced it."""

    sonarly_conn_id: str
    account_group_id: str | None
    list_type: str | None
    read_at: datetime
    quota: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class SpendRow:
    """One row of the warehouse table written by ``IndeedQuotaUsageOperator``; money exact."""

    employer_id: str
    month_start: date
    api_quota: int
    requests_count: int
    spend_amount: Decimal
    currency_code: str


def error_text(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """What a card shows for an error: its type and message, ``secrets`` masked, clipped."""
    from airflow_provider_quota.hooks.base import mask_secrets

    return mask_secrets(f"{type(exc).__name__}: {exc}", secrets)[:MAX_ERROR_CHARS]


def connection_secrets(conn_id: str) -> list[str]:
    """The password of a connection, as is and URL-encoded (as a driver quotes it in a URI); none if unreadable."""
    from urllib.parse import quote

    try:
        password = BaseHook.get_connection(conn_id).password or ""
    except Exception:
        return []
    return [password, quote(password, safe="")] if password else []


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if isinstance(value, datetime) else None


def waiting_gates(session: Session, dag_ids: set[str] | None = None) -> list[Gate]:
    """
    The gates waiting now, with their parameters and when they check next.

    A deferred gate's parameters come from its trigger's kwargs (``reset_at`` is its next check);
    a rescheduled one's from its rendered template fields and its latest reschedule date.

    :param session: a metadata database session.
    :param dag_ids: only these DAGs (the user's readable ones); None: all.
    """
    query = (
        select(TaskInstance)
        .where(TaskInstance.operator == SENSOR, TaskInstance.state.in_(WAITING_STATES))
        .order_by(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index)
    )
    gates = []
    for ti in session.scalars(query):
        if dag_ids is not None and ti.dag_id not in dag_ids:
            continue
        trigger = session.get(Trigger, ti.trigger_id) if ti.trigger_id is not None else None
        if trigger is not None:
            params: dict[str, Any] = trigger.kwargs
            next_check = _as_datetime(params.get("reset_at"))
        else:
            params = (
                session.scalar(
                    select(RenderedTaskInstanceFields.rendered_fields).where(
                        RenderedTaskInstanceFields.dag_id == ti.dag_id,
                        RenderedTaskInstanceFields.run_id == ti.run_id,
                        RenderedTaskInstanceFields.task_id == ti.task_id,
                        RenderedTaskInstanceFields.map_index == ti.map_index,
                    )
                )
                or {}
            )
            next_check = session.scalar(
                select(TaskReschedule.reschedule_date)
                .where(TaskReschedule.ti_id == ti.id)
                .order_by(TaskReschedule.id.desc())
                .limit(1)
            )
        gates.append(
            Gate(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                map_index=ti.map_index,
                state=str(ti.state),
                sonarly_conn_id=str(params.get("sonarly_conn_id") or "sonarly_default"),
                account_group_id=params.get("account_group_id") or None,
                list_type=params.get("list_type") or None,
                min_remaining=params.get("min_remaining", 1),
                next_check=next_check,
            )
        )
    return gates


def sonarly_connections(session: Session, also: Iterable[str] = ()) -> dict[str, str | None]:
    """
    Sonarly connection id -> its default account group (None without one).

    The candidates are the metadata database's ``sonarly`` connections, every ``AIRFLOW_CONN_*``
    variable, and ``also`` (the gates' connections, which a secrets backend may hold).
    """
    also = set(also)
    candidates = set(session.scalars(select(Connection.conn_id).where(Connection.conn_type == "sonarly")))
    prefix = "AIRFLOW_CONN_"
    candidates |= {name.removeprefix(prefix).lower() for name in os.environ if name.startswith(prefix)}
    found: dict[str, str | None] = {}
    for conn_id in sorted(candidates | also):
        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception:
            if conn_id in also:  # a gate's connection that cannot be read: its card will say why
                found[conn_id] = None
            continue
        if conn.conn_type == "sonarly":
            found[conn_id] = conn.extra_dejson.get("account_group_id") or None
    return found


def with_default_groups(gates: list[Gate], connections: dict[str, str | None]) -> list[Gate]:
    """The gates with the account group they really wait on (their connection's default when they name none)."""
    return [
        gate if gate.account_group_id else replace(gate, account_group_id=connections.get(gate.sonarly_conn_id))
        for gate in gates
    ]


def quota_keys(connections: dict[str, str | None], gates: list[Gate]) -> list[QuotaKey]:
    """
    The quotas in use: each gate's, and each connection's default group unless a gate already covers it.

    :param connections: from :func:`sonarly_connections`.
    :param gates: from :func:`with_default_groups`.
    """
    keys = {(g.sonarly_conn_id, g.account_group_id, g.list_type) for g in gates if g.sonarly_conn_id in connections}
    covered = {(conn_id, group) for conn_id, group, _ in keys}
    keys |= {(conn_id, group, None) for conn_id, group in connections.items() if (conn_id, group) not in covered}
    return sorted(keys, key=lambda key: tuple(part or "" for part in key))


def read_quota(key: QuotaKey) -> QuotaReading:
    """One quota request through :class:`SonarlyHook`, failing fast; an error becomes the reading's error."""
    from airflow_provider_quota.hooks.sonarly import SonarlyHook

    conn_id, group, list_type = key
    read_at = datetime.now(timezone.utc)
    try:
        quota = SonarlyHook(conn_id, **UI_HOOK_PARAMS).get_prospecting_quota(group, list_type)
    except Exception as exc:
        return QuotaReading(conn_id, group, list_type, read_at, error=error_text(exc))
    return QuotaReading(conn_id, group, list_type, read_at, quota=quota.model_dump(mode="json"))


class QuotaCache:
    """
    Quota readings kept for ``ttl_seconds`` per key: at most one request per key per period.

    Concurrent readers of a key wait for the one request under way instead of sending their own.

    :param ttl_seconds: how long a reading (or an error) is reused.
    :param read: how a key is read (:func:`read_quota`).
    """

    def __init__(self, ttl_seconds: float, read: Callable[[QuotaKey], QuotaReading] = read_quota) -> None:
        self.ttl_seconds = ttl_seconds
        self.read = read
        self.clock: Callable[[], float] = time.monotonic
        self._entries: dict[QuotaKey, tuple[float, QuotaReading]] = {}
        self._key_locks: dict[QuotaKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: QuotaKey) -> QuotaReading:
        """The reading of ``key``: the cached one while fresh, else a new one."""
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            cached = self._entries.get(key)
            if cached is not None and self.clock() < cached[0]:
                return cached[1]
            reading = self.read(key)
            self._entries[key] = (self.clock() + self.ttl_seconds, reading)
            return reading

    def get_all(self, keys: list[QuotaKey]) -> list[QuotaReading]:
        """The readings of ``keys``, read in parallel (a slow API delays the page once, not once per key)."""
        if not keys:
            return []
        with ThreadPoolExecutor(max_workers=min(len(keys), 8)) as pool:
            return list(pool.map(self.get, keys))


def _as_decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def read_spend(conn_id: str, table: str, *, since: date) -> list[SpendRow]:
    """
    The warehouse rows from the month of ``since`` on, oldest first; ``spend_amount`` read as Decimal.

    :param conn_id: the common.sql connection id.
    :param table: the table, ``table`` or ``schema.table``.
    :param since: the first month to read (a month's first day).
    """
    from airflow_provider_quota.utils.warehouse import get_db_hook, validate_table_name

    hook = get_db_hook(conn_id)
    sql = (
        "SELECT employer_id, month_start, api_quota, requests_count, spend_amount, currency_code "  # noqa: S608
        f"FROM {validate_table_name(table)} WHERE month_start >= {hook.placeholder} "
        "ORDER BY month_start, employer_id"
    )
    return [
        SpendRow(
            employer_id=str(employer),
            month_start=date.fromisoformat(str(month_start)[:10]),
            api_quota=int(api_quota),
            requests_count=int(requests),
            spend_amount=_as_decimal(spend),
            currency_code=str(currency),
        )
        for employer, month_start, api_quota, requests, spend, currency in hook.get_records(
            sql, parameters=(since.isoformat(),)
        )
    ]
