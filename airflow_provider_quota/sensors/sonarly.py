"""Sensor that holds a DAG until the Sonarly prospecting quota of an account group is usable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_quota.exceptions import InvalidParameterError
from airflow_provider_quota.sensors.base import GateCheck, QuotaGateSensor
from airflow_provider_quota.utils.limits import parse_count

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

    from airflow_provider_quota.hooks.sonarly import SonarlyHook


class SonarlyQuotaSensor(QuotaGateSensor):
    """
    Wait until the prospecting quota of a Sonarly account group is usable, then pass it on.

    The quota is usable when it is **not exhausted and** ``remaining >= min_remaining``.
    ``exhausted`` is authoritative: when it is true the sensor waits, whatever ``remaining``
    says. On success the task's XCom return value is the quota
    (``ProspectingQuota.model_dump(mode="json")``) plus ``granted``: the searches this run may
    start (``min_remaining``), so that the next task never starts more than the gate let through.

    The sensor never polls a quota it knows to be exhausted: the next check is scheduled
    just after ``resetAt`` (plus a small random jitter), in all three modes. In deferrable
    mode the wait happens in :class:`~airflow_provider_quota.triggers.sonarly.SonarlyQuotaResetTrigger`
    without holding a worker slot: a wait that ends at the first reset costs two quota requests,
    however long it is. ``poke_interval`` applies only when the reset time is unknown. 400, 401,
    403 and 404 answers, and a ``min_remaining`` above the quota's ``limit``, fail the task at
    once, without retries. ``timeout`` and ``soft_fail`` work as for any sensor; a quota that
    resets only after the timeout ends the task at once (timed out, or skipped with ``soft_fail``).

    .. seealso::
        :class:`~airflow_provider_quota.hooks.sonarly.SonarlyHook`,
        :mod:`airflow_provider_quota.sensors.base` for the waiting rules.

    :param sonarly_conn_id: the Sonarly connection id. (templated)
    :param account_group_id: the account group; defaults to the connection's
        ``account_group_id`` extra. (templated)
    :param list_type: the ``listType`` to check, e.g. ``LINKEDIN_CLASSIC``; None lets the API
        choose. (templated)
    :param min_remaining: the searches the downstream job needs (default 1). (templated)
    :param deferrable: wait in the triggerer instead of a worker; defaults to
        ``[operators] default_deferrable``.
    :param start_from_trigger: with ``deferrable``, make even the first check in the triggerer
        (Airflow 3.3+: the scheduler starts the task there, no worker is used until the quota is
        granted, and every check goes through the triggerer's shared checks and grants). Airflow
        3.2 and ``dag.test()`` ignore it and start in a worker; not for mapped tasks (``.expand()``).
    :param jitter: the largest random delay, in seconds, added after ``resetAt``.
    :param hook_params: timeouts and retry settings for the hook, e.g. ``{"read_timeout": 10}``.
    """

    template_fields: Sequence[str] = ("sonarly_conn_id", "account_group_id", "list_type", "min_remaining")
    ui_color = "#f4e1c1"

    def __init__(
        self,
        *,
        sonarly_conn_id: str = "sonarly_default",
        account_group_id: str | None = None,
        list_type: str | None = None,
        min_remaining: int | str = 1,
        start_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sonarly_conn_id = sonarly_conn_id
        self.account_group_id = account_group_id
        self.list_type = list_type
        self.min_remaining = min_remaining
        if start_from_trigger:
            from airflow.triggers.base import StartTriggerArgs

            if not self.deferrable:
                raise InvalidParameterError("start_from_trigger needs deferrable=True")
            self.start_from_trigger = True
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls="airflow_provider_quota.triggers.sonarly.SonarlyQuotaResetTrigger",
                trigger_kwargs=self._trigger_kwargs(reset_at=None, deadline=None, waiting_since=None),
                next_method="execute_complete",
                next_kwargs=None,
                timeout=timedelta(seconds=self.timeout),
            )

    @cached_property
    def hook(self) -> SonarlyHook:
        """The Sonarly hook of this task."""
        from airflow_provider_quota.hooks.sonarly import SonarlyHook

        return SonarlyHook(self.sonarly_conn_id, **self.hook_params)

    def required_remaining(self) -> int:
        """``min_remaining`` as a number (it may be rendered from a template as text)."""
        return parse_count(self.min_remaining, name="min_remaining")

    def check(self, context: Context) -> GateCheck:
        required = self.required_remaining()  # a bad value fails before any request
        quota = self.hook.get_prospecting_quota(self.account_group_id, self.list_type)
        if required > quota.limit:
            raise InvalidParameterError(
                f"min_remaining={required} can never be met: the {quota.list_type} quota allows {quota.limit} "
                "per window; lower min_remaining or split the job"
            )
        usable = quota.is_usable(required)
        resets = quota.reset_at.isoformat() if quota.reset_at else "an unknown time"
        return GateCheck(
            usable=usable,
            xcom={**quota.model_dump(mode="json"), "granted": required},
            resets_at=quota.reset_at,
            summary=f"Prospecting quota {'usable' if usable else 'not usable'}: exhausted={quota.exhausted}, "
            f"{quota.remaining} of {quota.limit} remaining (need {required}); resets at {resets}",
        )

    def make_trigger(self, last: GateCheck, deadline: datetime) -> BaseTrigger:
        from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger

        kwargs = self._trigger_kwargs(reset_at=last.resets_at, deadline=deadline, waiting_since=self._started_at)
        # Resolved here, so that the trigger's kwargs (and the Quotas page) name the group.
        kwargs["account_group_id"] = self.hook.resolve_account_group_id(self.account_group_id)
        return SonarlyQuotaResetTrigger(**kwargs)

    def _trigger_kwargs(self, **state: datetime | None) -> dict[str, Any]:
        # The names of the templated ones are the template fields': the triggerer renders them (start_from_trigger).
        return {
            "sonarly_conn_id": self.sonarly_conn_id,
            "account_group_id": self.account_group_id,
            "list_type": self.list_type,
            "min_remaining": self.min_remaining,
            "poke_interval": self.poke_interval,
            "jitter": self.jitter,
            "hook_params": self.hook_params,
            **state,
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any] | None:
        """
        OpenLineage lineage of this run, called by the OpenLineage provider when it is installed.

        Input: the account group's prospecting quota, namespace the Sonarly API's base URL, name
        ``v1/accounts/<accountGroupId>/prospecting/quota`` (plus ``/<listType>`` when one is set).
        It reads the connection only, never the API, so it holds after a deferral too (the
        provider calls it in the process that ran ``execute_complete``).

        :param task_instance: the finished task instance (unused).
        :return: the lineage, or None without the OpenLineage provider.
        """
        from airflow_provider_quota.utils.lineage import sonarly_quota_lineage

        return sonarly_quota_lineage(self.hook, self.account_group_id, self.list_type)
