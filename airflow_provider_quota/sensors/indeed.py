"""Sensor that holds an Indeed-calling DAG while the employer's monthly API quota is (nearly) spent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_quota.exceptions import InvalidParameterError
from airflow_provider_quota.sensors.base import GateCheck, QuotaGateSensor
from airflow_provider_quota.utils.budget import month_span
from airflow_provider_quota.utils.limits import parse_count, parse_decimal

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

    from airflow_provider_quota.hooks.indeed import IndeedHook
    from airflow_provider_quota.models import ApiQuotaUsage


def api_quota_check(usage: ApiQuotaUsage, *, max_used: Decimal, min_requests_left: int) -> GateCheck:
    """
    Whether an employer may call the API now: under ``max_used`` of ``apiQuota`` with ``min_requests_left`` left.

    Requests only grow within a month, so a held quota can change only when the month rolls over:
    ``resets_at`` is then the first instant of the next month in UTC.

    :raise InvalidParameterError: when ``min_requests_left`` is above ``apiQuota`` (it could never be met).
    """
    if min_requests_left > usage.api_quota:
        raise InvalidParameterError(
            f"min_requests_left={min_requests_left} can never be met: employer {usage.employer_id}'s apiQuota "
            f"is {usage.api_quota} requests a month"
        )
    left = max(usage.api_quota - usage.requests_count, 0)
    share = Fraction(usage.requests_count, usage.api_quota) if usage.api_quota else Fraction(1)
    usable = share < max_used and left >= min_requests_left
    resets_at = None if usable else month_span(usage.month_start, timezone.utc)[1]
    return GateCheck(
        usable=usable,
        xcom={**usage.model_dump(mode="json"), "requests_left": left},
        resets_at=resets_at,
        summary=f"Indeed API quota of employer {usage.employer_id} {'usable' if usable else 'held'}: "
        f"{usage.requests_count} of {usage.api_quota} requests used in {usage.month} (max {max_used:f}), "
        f"{left} left (need {min_requests_left})" + ("" if usable else f"; the month rolls over at {resets_at}"),
    )


class IndeedApiQuotaSensor(QuotaGateSensor):
    """
    Hold an Indeed-calling DAG while the employer's monthly API quota is (nearly) spent.

    The quota is held while the requests of the current month are at or above ``max_used`` of
    ``apiQuota``, or fewer than ``min_requests_left`` remain. Past ``apiQuota`` every integration
    of the employer fails until the month ends. Requests only grow within a month, so a held
    quota is not checked again before the month rolls over (the first instant of the next month
    in UTC, plus a grace and a random jitter), in every mode: ``deferrable`` waits in
    :class:`~airflow_provider_quota.triggers.indeed.IndeedApiQuotaTrigger` (a wait costs two usage
    requests, however long), ``reschedule`` reschedules to then, ``poke`` sleeps until then. A
    rollover after ``timeout`` ends the task at once (timed out, or skipped with ``soft_fail``);
    400, 401, 403 and 404 answers, and a ``min_requests_left`` above ``apiQuota``, fail it at once.
    On success the XCom return value is the usage (as
    :class:`~airflow_provider_quota.operators.indeed.IndeedQuotaUsageOperator` returns it) plus ``requests_left``.

    .. seealso::
        :mod:`airflow_provider_quota.sensors.base` for the waiting rules shared with
        :class:`~airflow_provider_quota.sensors.sonarly.SonarlyQuotaSensor`.

    :param indeed_conn_id: the Indeed connection id. (templated)
    :param employer_id: the employer; defaults to the connection's ``employer_id`` extra. (templated)
    :param max_used: the share of ``apiQuota`` at or above which the DAG waits (default 0.95). (templated)
    :param min_requests_left: the requests the gated work needs (default 1). (templated)
    :param deferrable: wait in the triggerer instead of a worker; defaults to
        ``[operators] default_deferrable``.
    :param jitter: the largest random delay, in seconds, added after the month rolls over.
    :param hook_params: timeouts and retry settings for the hook, e.g. ``{"read_timeout": 10}``.
    """

    template_fields: Sequence[str] = ("indeed_conn_id", "employer_id", "max_used", "min_requests_left")
    ui_color = "#dbe8f7"

    def __init__(
        self,
        *,
        indeed_conn_id: str = "indeed_default",
        employer_id: str | None = None,
        max_used: Decimal | float | str = Decimal("0.95"),
        min_requests_left: int | str = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.indeed_conn_id = indeed_conn_id
        self.employer_id = employer_id
        self.max_used = max_used
        self.min_requests_left = min_requests_left

    @cached_property
    def hook(self) -> IndeedHook:
        """The Indeed hook of this task."""
        from airflow_provider_quota.hooks.indeed import IndeedHook

        return IndeedHook(self.indeed_conn_id, employer_id=self.employer_id, **self.hook_params)

    def thresholds(self) -> tuple[Decimal, int]:
        """``max_used`` and ``min_requests_left``, validated (they may be rendered from templates as text)."""
        max_used = parse_decimal(self.max_used, name="max_used", low=Decimal(0), high=Decimal(1))
        return max_used, parse_count(self.min_requests_left, name="min_requests_left")

    def check(self, context: Context) -> GateCheck:
        max_used, min_requests_left = self.thresholds()  # bad values fail before any request
        usage = self.hook.get_api_quota_usage(None)
        return api_quota_check(usage, max_used=max_used, min_requests_left=min_requests_left)

    def make_trigger(self, last: GateCheck, deadline: datetime) -> BaseTrigger:
        from airflow_provider_quota.triggers.indeed import IndeedApiQuotaTrigger

        max_used, min_requests_left = self.thresholds()
        return IndeedApiQuotaTrigger(
            indeed_conn_id=self.indeed_conn_id,
            employer_id=self.hook.employer_id,
            max_used=f"{max_used:f}",
            min_requests_left=min_requests_left,
            resets_at=last.resets_at,
            poke_interval=self.poke_interval,
            jitter=self.jitter,
            hook_params=self.hook_params,
            deadline=deadline,
        )
