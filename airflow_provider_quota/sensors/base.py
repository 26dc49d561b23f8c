"""
The behaviour every quota gate shares: check when the answer can have changed, and never before.

A gate (:class:`QuotaGateSensor`) makes one paid check per poke. When the quota is not usable,
the check says when a new one can change the answer (the quota's reset); the gate waits until
then in every mode: ``deferrable`` hands the wait to a trigger, ``reschedule`` reschedules the
task to that time, ``poke`` sleeps until then. A next check that would come after the sensor's
timeout ends the task at once (timed out, or skipped with ``soft_fail``) instead of paying for a
check that could only find the quota spent. Errors no retry can fix fail the task without
retries; ``timeout``, ``soft_fail`` and ``never_fail`` are :class:`BaseSensorOperator`'s own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf, timezone
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
)

from airflow_provider_quota.exceptions import fail_fast_on_permanent_errors
from airflow_provider_quota.utils.limits import check_seconds
from airflow_provider_quota.utils.limits import hook_params as hook_params_of
from airflow_provider_quota.utils.timing import MIN_INTERVAL_SECONDS, MIN_WINDOW_SECONDS, after_reset, later

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger


@dataclass(frozen=True)
class GateCheck:
    """
    What one check of a quota told a gate.

    :param usable: whether the gated work may start now.
    :param xcom: the task's return value when it is usable.
    :param resets_at: when the quota resets, so that a new check can change the answer; None when unknown.
    :param summary: what the check found, for the log.
    """

    usable: bool
    xcom: dict[str, Any]
    resets_at: datetime | None
    summary: str


class QuotaGateSensor(BaseSensorOperator):
    """
    Base of the quota gates: the waiting rules of the module docstring, for any quota.

    Subclasses implement :meth:`check` (one paid request) and :meth:`make_trigger` (the deferred
    wait); their trigger fires an event ``{"status": "success", "xcom": ...}``,
    ``{"status": "error", "message": ..., "fail_fast": bool}`` or ``{"status": "timeout", "message": ...}``.

    :param deferrable: wait in the triggerer instead of a worker; defaults to
        ``[operators] default_deferrable``.
    :param jitter: the largest random delay, in seconds, added after a reset.
    :param hook_params: :class:`~airflow_provider_quota.hooks.base.HttpSettings` for the hook,
        e.g. ``{"read_timeout": 10}``.
    """

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        jitter: float = 5.0,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.jitter = check_seconds(jitter, name="jitter")
        self.hook_params = hook_params_of(hook_params)
        self._started_at: datetime | None = None
        self._next_check_at: datetime | None = None
        self._checked_before = False

    def check(self, context: Context) -> GateCheck:
        """One paid check of the quota."""
        raise NotImplementedError

    def make_trigger(self, last: GateCheck, deadline: datetime) -> BaseTrigger:
        """The trigger that waits for the quota after ``last``, ending at ``deadline``."""
        raise NotImplementedError

    def _deadline(self, context: Context) -> datetime:
        """When the sensor times out: ``timeout`` after its first check (the first try's, in reschedule mode)."""
        if self._started_at is None:
            ti = context.get("ti")
            first = ti.get_first_reschedule_date(context) if self.reschedule and ti is not None else None
            self._started_at = first or timezone.utcnow()
            self._checked_before = first is not None
        return later(self._started_at, self.timeout)

    def poke(self, context: Context) -> PokeReturnValue:
        deadline = self._deadline(context)
        with fail_fast_on_permanent_errors():
            last = self.check(context)
        self.log.info("%s", last.summary)
        if last.usable:
            return PokeReturnValue(is_done=True, xcom_value=last.xcom)
        now = timezone.utcnow()
        if last.resets_at is not None and last.resets_at > deadline:
            # Another check could only find the quota spent (a paid request): time out now.
            raise AirflowSensorTimeout(
                f"Sensor timed out: the quota resets at {last.resets_at.isoformat()}, after the "
                f"sensor's timeout of {self.timeout} s (at {deadline.isoformat()})"
            )
        # Unknown (None): after poke_interval, as for any sensor. After the first check, a reset is
        # awaited at least MIN_WINDOW_SECONDS: a resetAt that keeps moving must not cost a check a second.
        min_wait = MIN_WINDOW_SECONDS if self._checked_before else 0.0
        self._checked_before = True
        self._next_check_at = after_reset(last.resets_at, now=now, jitter=self.jitter, min_wait=min_wait)
        if self.deferrable:
            self.defer(
                trigger=self.make_trigger(last, deadline),
                method_name="execute_complete",
                timeout=max(deadline - now, timedelta(0)),
            )
        if self._next_check_at is not None:
            self.log.info("Next check at %s, just after the reset", self._next_check_at.isoformat())
        return PokeReturnValue(is_done=False)

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except AirflowRescheduleException as exc:
            # The base class reschedules after poke_interval; the quota knows when a check is worth paying for.
            raise AirflowRescheduleException(self._next_check_at or exc.reschedule_date) from None  # type: ignore[no-untyped-call]

    def _get_next_poke_interval(self, started_at: Any, run_duration: Callable[[], float], poke_count: int) -> float:
        # Poke mode only: Airflow has no public way to time the next poke, so this private hook
        # of BaseSensorOperator is overridden here, and tests/unit/sensors/test_base.py fails
        # loudly if Airflow renames or changes it.
        if self.reschedule or self._next_check_at is None:
            return float(super()._get_next_poke_interval(started_at, run_duration, poke_count))
        return max((self._next_check_at - timezone.utcnow()).total_seconds(), MIN_INTERVAL_SECONDS)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: return the XCom value, or end as the trigger says."""
        status = event.get("status") if isinstance(event, dict) else None
        if status == "success" and isinstance(event, dict) and isinstance(event.get("xcom"), dict):
            self.log.info("Quota usable after %s check(s) in the triggerer", event.get("checks", "?"))
            return event["xcom"]
        if status == "timeout" and isinstance(event, dict):
            raise AirflowSensorTimeout(str(event.get("message", "Sensor timed out")))
        if status == "error" and isinstance(event, dict):
            error = AirflowFailException if event.get("fail_fast") else AirflowException
            raise error(str(event.get("message", "quota check failed")))
        raise AirflowException(f"{type(self).__name__}'s trigger sent an unexpected event: {event!r:.500}")
