"""What the metadata database says: triggerer jobs, triggers and who runs them, and a dump for the secrets scan."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class TriggerRow:
    """A trigger of a deferred task instance, and the triggerer job that runs it."""

    trigger_id: int
    classpath: str
    kwargs_text: str
    triggerer_id: int | None
    triggerer_hostname: str | None
    task_id: str
    run_id: str
    map_index: int


class MetadataDatabase:
    """
    Read-only queries on the deployment's metadata database.

    :param url: its ``postgresql://`` URL.
    :param fernet_key: the deployment's Fernet key, to read the encrypted trigger kwargs.
    """

    def __init__(self, url: str, fernet_key: str) -> None:
        self.engine: Engine = create_engine(
            url.replace("postgresql://", "postgresql+psycopg2://", 1), pool_pre_ping=True
        )
        self._fernet_key = fernet_key

    def close(self) -> None:
        self.engine.dispose()

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text(sql), params)]

    def decrypt(self, value: str) -> str:
        """Trigger kwargs as text: Fernet-encrypted, or plain JSON (as Airflow 3.3 stores the Execution API's)."""
        from cryptography.fernet import Fernet

        if value.startswith("{"):
            return value
        return Fernet(self._fernet_key.encode()).decrypt(value.encode()).decode()

    def live_jobs(self, job_type: str, within_seconds: float) -> dict[str, int]:
        """Running jobs of a type that heartbeat within the last ``within_seconds``: host name -> job id."""
        rows = self.rows(
            "SELECT id, hostname FROM job WHERE job_type = :job_type AND state = 'running' AND end_date IS NULL "
            "AND latest_heartbeat > now() - make_interval(secs => :seconds) ORDER BY id",
            job_type=job_type,
            seconds=within_seconds,
        )
        return {row["hostname"]: row["id"] for row in rows}

    def job(self, job_id: int) -> dict[str, Any]:
        return self.rows("SELECT * FROM job WHERE id = :id", id=job_id)[0]

    def triggers(self, dag_id: str, run_id: str | None = None) -> list[TriggerRow]:
        """The triggers of a DAG's deferred task instances, with the triggerer running each (None: unassigned)."""
        rows = self.rows(
            "SELECT t.id, t.classpath, t.kwargs, t.triggerer_id, j.hostname, ti.task_id, ti.run_id, ti.map_index "
            "FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id LEFT JOIN job j ON j.id = t.triggerer_id "
            "WHERE ti.dag_id = :dag_id AND (CAST(:run_id AS TEXT) IS NULL OR ti.run_id = :run_id) ORDER BY t.id",
            dag_id=dag_id,
            run_id=run_id,
        )
        return [
            TriggerRow(
                trigger_id=row["id"],
                classpath=row["classpath"],
                kwargs_text=self.decrypt(row["kwargs"]),
                triggerer_id=row["triggerer_id"],
                triggerer_hostname=row["hostname"],
                task_id=row["task_id"],
                run_id=row["run_id"],
                map_index=row["map_index"],
            )
            for row in rows
        ]

    def try_history(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Earlier tries of a run's task instances (``task_instance_history``)."""
        return self.rows(
            "SELECT task_id, map_index, try_number, state, hostname FROM task_instance_history "
            "WHERE dag_id = :dag_id AND run_id = :run_id ORDER BY task_id, map_index, try_number",
            dag_id=dag_id,
            run_id=run_id,
        )

    def dump(self) -> dict[str, str]:
        """
        Every table as text (one JSON line per row), the trigger kwargs decrypted: what a backup holds.

        The connection and variable tables are left out: they hold the credentials, Fernet-encrypted,
        by design; every other table must not.
        """
        tables = sorted(set(inspect(self.engine).get_table_names()) - {"connection", "variable"})
        dump: dict[str, str] = {}
        for table in tables:
            lines = []
            for row in self.rows(f'SELECT * FROM "{table}"'):
                if table == "trigger" and row.get("kwargs"):
                    row["kwargs"] = self.decrypt(row["kwargs"])
                lines.append(json.dumps(row, default=_text, sort_keys=True))
            dump[table] = "\n".join(lines)
        return dump


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
