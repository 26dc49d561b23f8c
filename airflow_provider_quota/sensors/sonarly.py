"""Sensor that holds a DAG until the Sonarly prospecting quota of an account group is usable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf, timezone
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from airflow_provider_quota.exceptions import InvalidParameterError, is_permanent
from airflow_provider_quota.hooks.base import validate_hook_params

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_quota.hooks.sonarly import SonarlyHook
    from airflow_provider_quota.models import ProspectingQuota


class SonarlyQuotaSensor(BaseSensorOperator):
    """
    Wait until the prospecting quota of a Sonarly account group is usable, then pass it on.

    The quota is usable when it is **not exhausted and** ``remaining >= min_remaining``.
    ``exhausted`` is authoritative: when it is true the sensor waits, whatever ``remaining``
    says. On success the quota (``ProspectingQuota.model_dump(mode="json")``) is the task's
    XCom return value, so the next task knows how many searches it may start.

    The sensor never polls a quota it knows to be exhausted: the next check is scheduled
    just after ``resetAt`` (plus a small random jitter), in all three modes. In deferrable
    mode the wait happens in :class:`SonarlyQuotaResetTrigger` without holding a worker
    slot: a wait that ends at the first reset costs two quota requests, however long it is.
    ``poke_interval`` applies only when the reset time is unknown. 400, 401, 403 and 404
    answers fail the task at once, without retries. ``timeout`` and ``soft_fail`` work as for
    any sensor; in poke and reschedule mode, a quota that resets only after the timeout ends
    the task at once (timed out, or skipped with ``soft_fail``) instead of paying for one more
    check that could only find it exhausted.

    .. seealso::
        :class:`~airflow_provider_quota.hooks.sonarly.SonarlyHook`

    :param sonarly_conn_id: the Sonarly connection id. (templated)
    :param account_group_id: the account group; defaults to the connection's
        ``account_group_id`` extra. (templated)
    :param list_type: the ``listType`` to check, e.g. ``LINKEDIN_CLASSIC``; None lets the API
        choose. (templated)
    :param min_remaining: the smallest ``remaining`` the downstream job needs (default 1). (templated)
    :param deferrable: wait in the triggerer instead of a worker; defaults to
        ``[operators] default_deferrable``.
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
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        jitter: float = 5.0,
        hook_params: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or jitter < 0:
            raise InvalidParameterError(f"jitter must be a non-negative number of seconds, not {jitter!r}")
        self.sonarly_conn_id = sonarly_conn_id
        self.account_group_id = account_group_id
        self.list_type = list_type
        self.min_remaining = min_remaining
        self.deferrable = deferrable
        self.jitter = float(jitter)
        self.hook_params = validate_hook_params(hook_params)
        self._last_quota: ProspectingQuota | None = None

    @cached_property
    def hook(self) -> SonarlyHook:
        """The Sonarly hook of this task."""
        from airflow_provider_quota.hooks.sonarly import SonarlyHook

        return SonarlyHook(self.sonarly_conn_id, **self.hook_params)

    def _required_remaining(self) -> int:
        value = self.min_remaining
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AirflowFailException(f"min_remaining must be a non-negative integer, not {self.min_remaining!r}")
        return value

    def _check_quota(self) -> ProspectingQuota:
        """One quota request; permanent errors become AirflowFailException (no retries)."""
        try:
            quota = self.hook.get_prospecting_quota(self.account_group_id, self.list_type)
        except Exception as exc:
            if is_permanent(exc):
                raise AirflowFailException(str(exc)) from exc
            raise
        self._last_quota = quota
        return quota

    def _usable(self, quota: ProspectingQuota, required: int) -> bool:
        if quota.is_usable(required):
            self.log.info(
                "Prospecting quota usable: %d of %d remaining (need %d), exhausted=%s",
                quota.remaining,
                quota.limit,
                required,
                quota.exhausted,
            )
            return True
        self.log.info(
            "Prospecting quota not usable: exhausted=%s, %d of %d remaining (need %d); resets at %s",
            quota.exhausted,
            quota.remaining,
            quota.limit,
            required,
            quota.reset_at.isoformat() if quota.reset_at else "an unknown time",
        )
        return False

    def poke(self, context: Context) -> PokeReturnValue:
        required = self._required_remaining()  # a bad value fails before any request
        quota = self._check_quota()
        if self._usable(quota, required):
            return PokeReturnValue(is_done=True, xcom_value=quota.model_dump(mode="json"))
        return PokeReturnValue(is_done=False)

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        # BaseSensorOperator uses this in poke and reschedule mode: wait for the reset, not poke_interval.
        from airflow_provider_quota.timing import seconds_until_next_check

        fallback = super()._get_next_poke_interval(started_at, run_duration, poke_count)
        reset_at = self._last_quota.reset_at if self._last_quota else None
        delay = seconds_until_next_check(reset_at, now=timezone.utcnow(), fallback=fallback, jitter=self.jitter)
        if reset_at is not None and delay > fallback:
            left = self.timeout - run_duration()
            if delay > left:
                # The quota resets after the timeout: another check could only find it exhausted
                # (a paid request), so time out now, as the base class would at the deadline.
                self._fail_or_skip(
                    AirflowSensorTimeout(
                        f"Sensor timed out: the prospecting quota resets at {reset_at.isoformat()}, "
                        f"after the sensor's timeout of {self.timeout} s ({max(left, 0):.0f} s left)"
                    )
                )
            self.log.info("Next quota check in %.1f s, just after the reset", delay)
        return delay

    def _fail_or_skip(self, exc: AirflowException) -> NoReturn:
        """Raise ``exc``, or skip the task instead when ``soft_fail`` or ``never_fail`` is set."""
        if self.soft_fail or getattr(self, "never_fail", False):
            raise AirflowSkipException(f"Skipping ({'soft_fail' if self.soft_fail else 'never_fail'}): {exc}") from exc
        raise exc

    def execute(self, context: Context) -> Any:  # noqa: RET503 (self.defer raises)
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger

        try:
            required = self._required_remaining()
            quota = self._check_quota()
        except AirflowFailException as exc:  # as BaseSensorOperator.execute treats a failed poke
            self._fail_or_skip(exc)
        if self._usable(quota, required):
            return quota.model_dump(mode="json")
        self.defer(
            trigger=SonarlyQuotaResetTrigger(
                sonarly_conn_id=self.sonarly_conn_id,
                account_group_id=self.hook.resolve_account_group_id(self.account_group_id),
                list_type=self.list_type,
                min_remaining=required,
                reset_at=quota.reset_at,
                poke_interval=self.poke_interval,
                jitter=self.jitter,
                hook_params=self.hook_params,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: return the quota, or fail with the trigger's error."""
        if not isinstance(event, dict) or event.get("status") not in ("success", "error"):
            raise AirflowException(f"SonarlyQuotaResetTrigger sent an unexpected event: {event!r}")
        if event["status"] == "error":
            if event.get("fail_fast"):
                raise AirflowFailException(event.get("message", "quota check failed"))
            raise AirflowException(event.get("message", "quota check failed"))
        quota = event.get("quota")
        if not isinstance(quota, dict):
            raise AirflowException(f"SonarlyQuotaResetTrigger sent a success event without a quota: {event!r}")
        self.log.info(
            "Prospecting quota usable after %d check(s) in the triggerer: %s of %s remaining",
            event.get("checks", 0),
            quota.get("remaining"),
            quota.get("limit"),
        )
        return quota

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
        from airflow_provider_quota.lineage import sonarly_quota_lineage

        return sonarly_quota_lineage(self.hook, self.account_group_id, self.list_type)
