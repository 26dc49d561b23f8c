"""
OpenLineage datasets of :class:`IndeedQuotaUsageOperator` and :class:`SonarlyQuotaSensor`.

Everything here runs only when the OpenLineage provider asks a task for its lineage
(``get_openlineage_facets_on_complete``). Nothing is imported from OpenLineage at module
level, so ``apache-airflow-providers-openlineage`` stays optional: without it these
functions return None and no task pays for lineage.

Dataset names:

- **Indeed API usage** (input, one per employer and month): namespace the API's base URL
  (the connection's host, default ``https://apis.indeed.com``), name
  ``ads/v1/apiquotausage/<employer_id>/<MMyyyy>``.
- **Sonarly prospecting quota** (input): namespace the API's base URL (default
  ``https://api.sonarly.io``), name ``v1/accounts/<accountGroupId>/prospecting/quota``, followed
  by ``/<listType>`` when the sensor asks for one list type.

  Ids are percent-encoded as one path segment, as in the requests themselves. Both carry a
  ``dataSource`` facet naming the API.
- **Warehouse table** (output): the name the OpenLineage SQL integrations give the same table,
  so lineage joins up with any SQL task writing or reading it. The hook's
  ``get_openlineage_database_info`` gives the namespace (``postgres://host:5432``...), and the
  OpenLineage SQL parser together with the database's information schema gives the name
  (``database.schema.table``, the schema from the table name or
  ``get_openlineage_default_schema()``) and a ``schema`` facet. A hook without OpenLineage
  support gets a fallback name. SQLite (a file on one machine) gets namespace
  ``file://<hostname>`` and name ``<absolute database path>/<table>``. Any other hook gets
  ``<dialect>://<host:port>`` and ``[<database>.]<table>``.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    from airflow_provider_quota.hooks.sonarly import SonarlyHook

log = logging.getLogger(__name__)

#: A read from an API recorded by a task: (API base URL, employer id, month ``MMyyyy``).
UsageRead = tuple[str, str, str]


def _operator_lineage(inputs: list[Dataset], outputs: list[Dataset]) -> OperatorLineage[Any, Any]:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=inputs, outputs=outputs)


def openlineage_available() -> bool:
    """Whether the OpenLineage provider can be imported (it is optional)."""
    try:
        import airflow.providers.openlineage.extractors  # noqa: F401
    except ImportError:
        return False
    return True


def api_dataset(base_url: str, name: str, *, api: str) -> Dataset:
    """
    An API resource as an OpenLineage dataset: namespace ``base_url``, a ``dataSource`` facet naming the API.

    :param base_url: the API's base URL, from the connection (never carries credentials).
    :param name: the resource, a path without a leading slash.
    :param api: the API's display name.
    """
    from openlineage.client.event_v2 import Dataset
    from openlineage.client.facet_v2 import datasource_dataset

    return Dataset(
        namespace=base_url,
        name=name,
        facets={"dataSource": datasource_dataset.DatasourceDatasetFacet(name=api, uri=base_url)},
    )


def indeed_usage_dataset(base_url: str, employer_id: str, month: str) -> Dataset:
    """The Indeed API usage of one employer and month: ``ads/v1/apiquotausage/<employer_id>/<MMyyyy>``."""
    from airflow_provider_quota.hooks.indeed import QUOTA_USAGE_PATH

    name = f"{QUOTA_USAGE_PATH.strip('/')}/{quote(employer_id, safe='')}/{quote(month, safe='')}"
    return api_dataset(base_url, name, api="Indeed Sponsored Jobs API")


def sonarly_quota_dataset(hook: SonarlyHook, account_group_id: str | None, list_type: str | None) -> Dataset:
    """
    The prospecting quota of an account group: ``v1/accounts/<accountGroupId>/prospecting/quota[/<listType>]``.

    Reads the connection (base URL, default account group), never the API.
    """
    name = hook.quota_path(account_group_id).strip("/") + (f"/{quote(list_type, safe='')}" if list_type else "")
    return api_dataset(hook.base_url, name, api="Sonarly")


def _upsert_sql(table: str) -> str:
    """The statement the OpenLineage SQL parser reads the output table from: what ``insert_rows`` runs."""
    from airflow_provider_quota.utils.warehouse import COLUMNS, validate_table_name

    values = ", ".join("NULL" for _ in COLUMNS)
    return f"INSERT INTO {validate_table_name(table)} ({', '.join(COLUMNS)}) VALUES ({values})"  # noqa: S608


def _fallback_table_name(hook: DbApiHook, connection: Any, table: str) -> tuple[str, str]:
    """Namespace and name of a table whose hook gives no OpenLineage database info."""
    if hook.dialect_name == "sqlite":
        path = connection.host or ""
        if path and path != ":memory:" and not path.startswith("file:"):
            path = os.path.abspath(path)
        return f"file://{socket.gethostname()}", f"{path}/{table}"
    try:
        authority = hook.get_openlineage_authority_part(connection)
    except Exception:
        authority = connection.host or ""
    return f"{hook.dialect_name}://{authority}", ".".join(part for part in (connection.schema, table) if part)


def _schema_facet(dialect: str, *, with_types: bool) -> Any:
    from openlineage.client.facet_v2 import schema_dataset

    from airflow_provider_quota.utils.warehouse import column_types

    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(name=column, type=sql_type if with_types else None)
            for column, sql_type in column_types(dialect).items()
        ]
    )


def warehouse_table_dataset(hook: DbApiHook, table: str, *, create_table: bool) -> Dataset:
    """
    The warehouse table as the OpenLineage SQL integrations name it (see the module docstring).

    :param hook: the warehouse hook.
    :param table: ``table`` or ``schema.table``.
    :param create_table: whether the operator created the table (then the ``schema`` facet's
        types are its DDL's when the information schema cannot be read).
    """
    from openlineage.client.event_v2 import Dataset

    connection = hook.get_connection(getattr(hook, hook.conn_name_attr))
    try:
        database_info = hook.get_openlineage_database_info(connection)
    except (AttributeError, NotImplementedError):
        database_info = None
    dataset: Dataset | None = None
    if database_info is not None:
        from airflow.providers.openlineage.sqlparser import SQLParser

        parser = SQLParser(
            dialect=hook.get_openlineage_database_dialect(connection),
            default_schema=hook.get_openlineage_default_schema(),
        )
        lineage = parser.generate_openlineage_metadata_from_sql(
            sql=_upsert_sql(table),
            hook=hook,
            database_info=database_info,
            sqlalchemy_engine=hook.get_sqlalchemy_engine(),
        )
        if lineage.outputs:
            dataset = lineage.outputs[0]
    if dataset is None:
        namespace, name = _fallback_table_name(hook, connection, table)
        dataset = Dataset(namespace=namespace, name=name)
    if not dataset.facets or "schema" not in dataset.facets:
        facets = dict(dataset.facets or {})
        facets["schema"] = _schema_facet(hook.dialect_name, with_types=create_table)
        dataset = Dataset(namespace=dataset.namespace, name=dataset.name, facets=facets)
    return dataset


def indeed_usage_lineage(
    reads: list[UsageRead], *, sql_conn_id: str | None, table: str | None, create_table: bool
) -> OperatorLineage[Any, Any] | None:
    """
    Lineage of one :class:`IndeedQuotaUsageOperator` run.

    :param reads: the (base URL, employer, month) read from the API during the run.
    :param sql_conn_id: the warehouse connection, when the task has one.
    :param table: the table written during the run, None when nothing was written.
    :param create_table: whether the operator creates the table.
    :return: None when the OpenLineage provider is not installed.
    """
    if not openlineage_available():
        return None
    inputs = [indeed_usage_dataset(*read) for read in reads]
    outputs = []
    if sql_conn_id and table:
        from airflow_provider_quota.utils.warehouse import get_db_hook

        try:
            outputs.append(warehouse_table_dataset(get_db_hook(sql_conn_id), table, create_table=create_table))
        except Exception as exc:
            # Keep the inputs: the OpenLineage provider would drop the whole lineage on an exception.
            log.warning("OpenLineage: could not name warehouse table %s of %s: %s", table, sql_conn_id, exc)
    return _operator_lineage(inputs, outputs)


def sonarly_quota_lineage(
    hook: SonarlyHook, account_group_id: str | None, list_type: str | None
) -> OperatorLineage[Any, Any] | None:
    """
    Lineage of one :class:`SonarlyQuotaSensor` run: the account group's prospecting quota as input.

    :return: None when the OpenLineage provider is not installed.
    """
    if not openlineage_available():
        return None
    return _operator_lineage([sonarly_quota_dataset(hook, account_group_id, list_type)], [])
