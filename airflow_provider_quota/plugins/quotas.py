"""
The Quotas page of the Airflow UI: Sonarly quota per account group, the gates waiting on it, Indeed spend.

Every Airflow process that loads plugins imports this module, so it imports nothing heavy: the
FastAPI app behind the page is built on the first request the API server routes to it.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time,
# and the routes are defined inside create_app(), which imports what they name.

import dataclasses
import threading
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import conf

HERE = Path(__file__).parent
URL_PREFIX = "/quotas"
#: Months of Indeed spend on the page: the current one and the eleven before it.
SPEND_MONTHS = 12
PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")
#: Chart geometry in SVG user units: size, then the plot area's margins.
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 240, 72, 32, 12, 28


def base_path() -> str:
    """The path of ``[api] base_url`` (``""`` at the root): the UI's links start with it."""
    return urlsplit(conf.get("api", "base_url", fallback="/") or "/").path.rstrip("/")


class _AppOnFirstRequest:
    """An ASGI app that builds :func:`create_app` when the first request reaches it."""

    def __init__(self) -> None:
        self.app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            with self._lock:  # one app (and one quota cache), even for first requests on several threads
                if self.app is None:
                    self.app = create_app()
        await self.app(scope, receive, send)


class QuotasPlugin(AirflowPlugin):
    """Adds Browse > Quotas to the Airflow UI, served by the API server under ``/quotas/``."""

    name = "quotas"
    # Lists, as AirflowPlugin declares them (Airflow reads the class attributes).
    fastapi_apps: list[Any] = [  # noqa: RUF012
        {"app": _AppOnFirstRequest(), "url_prefix": URL_PREFIX, "name": "Quotas"}
    ]
    external_views: list[Any] = [  # noqa: RUF012
        {
            "name": "Quotas",
            "href": f"{base_path()}{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "quotas",
        }
    ]


def task_instance_url(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The task instance's page in the Airflow UI."""
    url = f"{base_path()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    return f"{url}/mapped/{map_index}" if map_index >= 0 else url


def utc_text(value: datetime | str | None) -> str:
    """A time as ``2026-11-16T10:00:00Z`` (UTC, whole seconds): shown on the page and parsed by its countdowns."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value is None:
        return ""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nice_top(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at least ``value`` (an axis' top)."""
    if value <= 0:
        return 1.0
    step = 10.0 ** len(str(int(value))) / 10
    return next(step * k for k in (1, 2, 5, 10) if step * k >= value)


def line_chart(
    months: list[date], series: dict[str, dict[date, float]], *, top: float, unit: str, colors: dict[str, str]
) -> dict[str, Any]:
    """
    An SVG line chart's geometry: one line per series over ``months`` (in ``colors[name]``), a y axis from 0 to ``top``.

    Floats are for drawing only; the page's table shows the exact figures.
    """

    def x(index: int) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * index / max(len(months) - 1, 1)

    def y(value: float) -> float:
        return HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * value / top

    lines = []
    for name, values in sorted(series.items()):
        points = [(round(x(i), 1), round(y(values[m]), 1)) for i, m in enumerate(months) if m in values]
        lines.append({"name": name, "color": colors[name], "points": points})
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "bottom": HEIGHT - BOTTOM,
        "x_labels": [{"x": round(x(i), 1), "text": f"{m:%b %y}"} for i, m in enumerate(months)],
        "y_ticks": [{"y": round(y(top * k / 4), 1), "text": f"{top * k / 4:,.0f}{unit}"} for k in range(5)],
        "lines": lines,
    }


def _months_back(today: date, count: int) -> list[date]:
    months = [today.replace(day=1)]
    while len(months) < count:
        first = months[-1]
        months.append(date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1))
    return months[::-1]


def spend_section(today: date, user: Any) -> dict[str, Any]:
    """The Indeed section: the configured warehouse table's rows, one spend chart per currency, the usage chart."""
    from airflow_provider_quota.models import plain_decimal
    from airflow_provider_quota.plugins.quotas_data import connection_secrets, error_text, read_spend

    conn_id = conf.get("quota", "spend_conn_id", fallback="")
    table = conf.get("quota", "spend_table", fallback="indeed_api_quota_usage")
    section: dict[str, Any] = {"conn_id": conn_id, "table": table, "rows": [], "charts": [], "error": None}
    if not conn_id:
        return section
    if not may_read_connection(user, conn_id):
        return {**section, "error": f"You may not read the connection {conn_id!r} that holds the spend table."}
    months = _months_back(today, SPEND_MONTHS)
    try:
        rows = read_spend(conn_id, table, since=months[0])
    except Exception as exc:  # a driver may quote its connection URI: its password is masked
        return {**section, "error": error_text(exc, connection_secrets(conn_id))}
    section["rows"] = [
        {
            **dataclasses.asdict(row),
            "spend_amount": plain_decimal(row.spend_amount),
            "month": row.month_start.strftime("%Y-%m"),
        }
        for row in rows
    ]
    employers = sorted({row.employer_id for row in rows})
    colors = {employer: PALETTE[number % len(PALETTE)] for number, employer in enumerate(employers)}
    for currency in sorted({row.currency_code for row in rows}):
        spend: dict[str, dict[date, float]] = {}
        for row in rows:
            if row.currency_code == currency:
                # A float for the chart's pixels only: the table under it shows the exact amount.
                spend.setdefault(row.employer_id, {})[row.month_start] = float(row.spend_amount)
        top = _nice_top(max(v for values in spend.values() for v in values.values()))
        chart = line_chart(months, spend, top=top, unit="", colors=colors)
        section["charts"].append({**chart, "title": f"Monthly spend per employer ({currency})"})
    if rows:
        used: dict[str, dict[date, float]] = {}
        for row in rows:
            used.setdefault(row.employer_id, {})[row.month_start] = 100 * row.requests_count / max(row.api_quota, 1)
        top = _nice_top(max(100.0, *(v for values in used.values() for v in values.values())))
        chart = line_chart(months, used, top=top, unit=" %", colors=colors)
        quota_line = round(HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * 100 / top, 1)
        section["charts"].append({**chart, "title": "API requests used, % of apiQuota", "quota_line": quota_line})
    return section


def may_read_connection(user: Any, conn_id: str) -> bool:
    """Whether Airflow's auth manager lets ``user`` read the connection ``conn_id``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    details = ConnectionDetails(conn_id=conn_id)
    return bool(get_auth_manager().is_authorized_connection(method="GET", details=details, user=user))


def gates_and_connections(user: Any, session: Any) -> tuple[list[Any], dict[str, str | None]]:
    """The waiting gates and the Sonarly connections (id -> default group) that ``user`` may read."""
    from airflow.api_fastapi.app import get_auth_manager

    from airflow_provider_quota.plugins import quotas_data as data

    gates = data.waiting_gates(session, get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))
    connections = {
        conn_id: group
        for conn_id, group in data.sonarly_connections(session, {g.sonarly_conn_id for g in gates}).items()
        if may_read_connection(user, conn_id)
    }
    return data.with_default_groups(gates, connections), connections


def gate_rows(gates: list[Any]) -> list[dict[str, Any]]:
    """The gates as the page and ``/api/gates`` show them, each with its link in the UI."""
    return [
        {**dataclasses.asdict(g), "url": task_instance_url(g.dag_id, g.run_id, g.task_id, g.map_index)} for g in gates
    ]


def create_app() -> Any:
    """The FastAPI app of the page (``/``) and its JSON endpoints (``/api/...``); API server only."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_connection, requires_access_dag
    from fastapi import Depends, FastAPI
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from jinja2 import Environment, FileSystemLoader

    from airflow_provider_quota.plugins.quotas_data import QuotaCache

    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    templates.filters["utc"] = utc_text
    app = FastAPI(title="Quotas", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.quota_cache = QuotaCache(conf.getfloat("quota", "ui_cache_seconds", fallback=60.0))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # Airflow's own auth manager: who may read connections and DAG runs may see the page.
    allowed = [Depends(requires_access_connection("GET")), Depends(requires_access_dag("GET", DagAccessEntity.RUN))]

    def readings(user: Any, session: Any) -> tuple[list[Any], list[Any]]:
        from airflow_provider_quota.plugins.quotas_data import quota_keys

        gates, connections = gates_and_connections(user, session)
        return app.state.quota_cache.get_all(quota_keys(connections, gates)), gates

    @app.get("/", dependencies=allowed, response_class=HTMLResponse)
    def page(user: GetUserDep, session: SessionDep) -> HTMLResponse:
        now = datetime.now(timezone.utc)
        quotas, gates = readings(user, session)
        html = templates.get_template("quotas.html").render(
            now=now,
            quotas=quotas,
            gates=gate_rows(gates),
            spend=spend_section(now.date(), user),
            cache_seconds=app.state.quota_cache.ttl_seconds,
        )
        return HTMLResponse(html)

    @app.get("/api/quotas", dependencies=allowed)
    def quotas(user: GetUserDep, session: SessionDep) -> Any:
        return jsonable_encoder(readings(user, session)[0])

    @app.get("/api/gates", dependencies=allowed)
    def gates(user: GetUserDep, session: SessionDep) -> Any:
        return jsonable_encoder(gate_rows(gates_and_connections(user, session)[0]))

    @app.get("/api/spend", dependencies=allowed)
    def spend(user: GetUserDep) -> Any:
        section = spend_section(datetime.now(timezone.utc).date(), user)
        return jsonable_encoder({key: section[key] for key in ("conn_id", "table", "rows", "error")})

    return app
