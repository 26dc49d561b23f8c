"""Operator extracting an employer's monthly Indeed Sponsored Jobs API usage, quota and spend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, timezone
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_quota.exceptions import fail_fast_on_permanent_errors
from airflow_provider_quota.utils.limits import hook_params as hook_params_of
from airflow_provider_quota.utils.limits import is_templated

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_quota.hooks.indeed import IndeedHook
    from airflow_provider_quota.utils.budget import BudgetLimits
    from airflow_provider_quota.utils.lineage import UsageRead


class IndeedQuotaUsageOperator(BaseOperator):
    """
    Extract an employer's Indeed Sponsored Jobs API usage, quota and spend for a month.

    The record is returned (so it lands in XCom) as a JSON-serialisable dict, spend as an
    exact decimal string. With ``sql_conn_id`` it is also upserted into ``table`` through
    that connection's common.sql hook (SQLite, PostgreSQL, MySQL, Snowflake...): one row per
    (employer_id, month), updated in place on reruns, never half-written (see
    :mod:`airflow_provider_quota.utils.warehouse`). The table is declared as an Asset in the
    task's outlets (see :func:`~airflow_provider_quota.warehouse.warehouse_table_asset`).

    Which month: ``month=None`` is the month the run is responsible for (the data interval's
    month with an interval timetable, the last completed month with a trigger timetable),
    ``"current"`` is the current month to date, ``"MMyyyy"`` or ``"YYYY-MM"`` a given month, and
    a list of months backfills them in one task with one access token, each month once. Invalid
    months fail the task without retries and without any request.

    .. seealso::
        :class:`~airflow_provider_quota.hooks.indeed.IndeedHook`

    :param indeed_conn_id: the Indeed connection id. (templated)
    :param employer_id: the employer; defaults to the connection's ``employer_id`` extra. (templated)
    :param month: None, ``"current"``, ``"MMyyyy"``, ``"YYYY-MM"``, a date, or a list of them. (templated)
    :param sql_conn_id: a common.sql connection to write to; None keeps the record in XCom only.
    :param table: the warehouse table, ``table`` or ``schema.table``. (templated)
    :param create_table: create the table when it does not exist.
    :param hook_params: :class:`~airflow_provider_quota.hooks.base.HttpSettings` for the hook,
        e.g. ``{"read_timeout": 10}``.
    """

    template_fields: Sequence[str] = ("indeed_conn_id", "employer_id", "month", "table")
    ui_color = "#dbe8f7"

    def __init__(
        self,
        *,
        indeed_conn_id: str = "indeed_default",
        employer_id: str | None = None,
        month: str | date | list[str | date] | None = None,
        sql_conn_id: str | None = None,
        table: str = "indeed_api_quota_usage",
        create_table: bool = True,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from airflow_provider_quota.utils.warehouse import validate_table_name, warehouse_table_asset

        templated_table = isinstance(table, str) and "{{" in table
        if not templated_table:
            validate_table_name(table)
        if sql_conn_id and not templated_table and "outlets" not in kwargs:
            kwargs["outlets"] = [warehouse_table_asset(sql_conn_id, table)]
        super().__init__(**kwargs)
        self.indeed_conn_id = indeed_conn_id
        self.employer_id = employer_id
        self.month = month
        self.sql_conn_id = sql_conn_id
        self.table = table
        self.create_table = create_table
        self.hook_params = hook_params_of(hook_params)
        # What this run read and wrote, for OpenLineage only (no secret, no extra request).
        self._lineage_reads: list[UsageRead] = []
        self._lineage_table: str | None = None

    @cached_property
    def hook(self) -> IndeedHook:
        """The Indeed hook of this task (one access token for every month it extracts)."""
        from airflow_provider_quota.hooks.indeed import IndeedHook

        return IndeedHook(self.indeed_conn_id, employer_id=self.employer_id, **self.hook_params)

    def execute(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        from airflow_provider_quota.utils.months import months_to_extract
        from airflow_provider_quota.utils.warehouse import get_db_hook, validate_table_name, write_usage

        extracted_at = timezone.utcnow()
        with fail_fast_on_permanent_errors():
            months = months_to_extract(self.month, context)
            if self.sql_conn_id:
                validate_table_name(self.table)
            # A missing or wrong warehouse connection fails here, before any (possibly paid) API call.
            db_hook = get_db_hook(self.sql_conn_id, create_table=self.create_table) if self.sql_conn_id else None
            records = [self.hook.get_api_quota_usage(month) for month in months]
            self._lineage_reads = [(self.hook.base_url, record.employer_id or "", record.month) for record in records]
            if db_hook is not None:
                written = write_usage(
                    db_hook, self.table, records, extracted_at=extracted_at, create_table=self.create_table
                )
                self.log.info("Upserted %d row(s) into %s via %s", written, self.table, self.sql_conn_id)
                self._lineage_table = self.table
        results = [{**record.model_dump(mode="json"), "extracted_at": extracted_at.isoformat()} for record in records]
        for result in results:
            self.log.info(
                "Employer %s, month %s: %d of %d API requests used, spend %s %s",
                result["employer_id"],
                result["month"],
                result["requests_count"],
                result["api_quota"],
                result["spend_amount"],
                result["currency_code"],
            )
        return results if isinstance(self.month, (list, tuple)) else results[0]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any] | None:
        """
        OpenLineage lineage of this run, called by the OpenLineage provider when it is installed.

        Inputs: one dataset per employer and month read, namespace the Indeed API's base URL,
        name ``ads/v1/apiquotausage/<employer_id>/<MMyyyy>``. Output: the warehouse table, when
        this run wrote one, named as the OpenLineage SQL integrations name it (see
        :mod:`airflow_provider_quota.utils.lineage`). Built from what ``execute`` recorded: no API request.

        :param task_instance: the finished task instance (unused).
        :return: the lineage, or None without the OpenLineage provider.
        """
        from airflow_provider_quota.utils.lineage import indeed_usage_lineage

        return indeed_usage_lineage(
            self._lineage_reads, sql_conn_id=self.sql_conn_id, table=self._lineage_table, create_table=self.create_table
        )


class IndeedBudgetCheckOperator(BaseOperator):
    """
    Check an employer's Indeed sponsored-jobs spend and API quota for a month against limits.

    One usage request (and one access token). Spend is compared with ``budget`` in ``currency``
    (the API's ``currencyCode`` must match, or the task fails naming both). For a completed month,
    spend above the budget is a breach. For the current month the expected spend to date is
    ``budget x`` the elapsed fraction of the month in the DAG's time zone, measured at the moment
    the usage is read (the spend is to date as of then, whatever the run's logical date): a pace
    ratio at or above ``max_pace`` is a breach, and so is spend already above the whole budget.
    Requests at or above ``max_api_quota_used`` of ``apiQuota`` are a breach in any month. The
    rules and the rounding: :func:`~airflow_provider_quota.utils.budget.check_budget`.

    It returns the record (month, spend, budget, expected to date, pace ratio, requests, quota,
    share used, breaches), money as exact decimal strings. On a breach it fails without retries
    (``AirflowFailException``), or skips with ``soft_fail=True``; the message lists every breach,
    so ``on_failure_callback`` notifiers can pass it on (``{{ exception }}``). Invalid limits and
    months fail before any request.

    :param indeed_conn_id: the Indeed connection id. (templated)
    :param employer_id: the employer; defaults to the connection's ``employer_id`` extra. (templated)
    :param month: None (the run's month, as :class:`IndeedQuotaUsageOperator` reads it),
        ``"current"``, ``"MMyyyy"``, ``"YYYY-MM"`` or a date. (templated)
    :param budget: the month's budget, an exact decimal (a string, an int or a Decimal). (templated)
    :param currency: the budget's ISO 4217 currency, e.g. ``"USD"``; required with a budget. (templated)
    :param max_pace: the pace ratio that is a breach, e.g. ``1.2`` (20 % ahead of pace). (templated)
    :param max_api_quota_used: the share of ``apiQuota`` that is a breach, e.g. ``0.9``. (templated)
    :param soft_fail: skip instead of failing on a breach.
    :param hook_params: :class:`~airflow_provider_quota.hooks.base.HttpSettings` for the hook.
    """

    template_fields: Sequence[str] = (
        "indeed_conn_id",
        "employer_id",
        "month",
        "budget",
        "currency",
        "max_pace",
        "max_api_quota_used",
    )
    ui_color = "#f7e3db"

    def __init__(
        self,
        *,
        indeed_conn_id: str = "indeed_default",
        employer_id: str | None = None,
        month: str | date | None = None,
        budget: Decimal | int | str | None = None,
        currency: str | None = None,
        max_pace: Decimal | float | str | None = None,
        max_api_quota_used: Decimal | float | str | None = None,
        soft_fail: bool = False,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.indeed_conn_id = indeed_conn_id
        self.employer_id = employer_id
        self.month = month
        self.budget = budget
        self.currency = currency
        self.max_pace = max_pace
        self.max_api_quota_used = max_api_quota_used
        self.soft_fail = soft_fail
        self.hook_params = hook_params_of(hook_params)
        if not any(map(is_templated, (budget, currency, max_pace, max_api_quota_used))):
            self._limits()  # wrong limits fail when the DAG is parsed

    @cached_property
    def hook(self) -> IndeedHook:
        """The Indeed hook of this task."""
        from airflow_provider_quota.hooks.indeed import IndeedHook

        return IndeedHook(self.indeed_conn_id, employer_id=self.employer_id, **self.hook_params)

    def _limits(self) -> BudgetLimits:
        from airflow_provider_quota.utils.budget import BudgetLimits

        return BudgetLimits.parse(
            budget=self.budget,
            currency=self.currency,
            max_pace=self.max_pace,
            max_api_quota_used=self.max_api_quota_used,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_quota.exceptions import InvalidParameterError
        from airflow_provider_quota.utils.budget import check_budget
        from airflow_provider_quota.utils.months import months_to_extract

        with fail_fast_on_permanent_errors():
            limits = self._limits()
            if isinstance(self.month, (list, tuple)):
                raise InvalidParameterError("month must be one month: a budget check reads one month")
            [month] = months_to_extract(self.month, context)
            usage = self.hook.get_api_quota_usage(month)
            zone = getattr(context.get("dag"), "timezone", None) or timezone.utc
            record = check_budget(usage, limits, now=timezone.utcnow(), zone=zone)
        self.log.info("Indeed budget check: %s", {name: value for name, value in record.items() if name != "breaches"})
        if record["breaches"]:
            breaches = "; ".join(f"{n}) {b['message']}" for n, b in enumerate(record["breaches"], 1))
            message = f"Indeed budget check of employer {record['employer_id']} for {record['month']}: {breaches}"
            raise (AirflowSkipException if self.soft_fail else AirflowFailException)(message)
        return record
