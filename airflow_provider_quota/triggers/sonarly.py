"""Trigger that sleeps until a Sonarly prospecting quota resets, then checks it once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_quota.exceptions import is_permanent
from airflow_provider_quota.triggers.base import (
    MAX_CONSECUTIVE_FAILURES,
    MAX_FAILURE_BACKOFF_SECONDS,
    sleep_until,
    wall_clock,
)
from airflow_provider_quota.utils.timing import MIN_INTERVAL_SECONDS, after_reset, later


class SonarlyQuotaResetTrigger(BaseTrigger):
    """
    Sleep until the prospecting quota resets, check it once, and fire when it is usable.

    The trigger sleeps until ``reset_at`` plus a short grace and a random jitter (at once when
    ``reset_at`` is already past, e.g. after a triggerer outage), then makes one quota request.
    If the quota is still not usable, it sleeps until the new ``resetAt``, or ``poke_interval``
    when there is none. A failed check (after the hook's own retries) is retried after a doubling
    backoff; 3 in a row, or any permanent error (400, 401, 403, 404), end it with an error event.
    A next check after ``deadline`` ends it with a timeout event. Every path through the loop
    sleeps or ends. Network I/O is asynchronous.

    Its serialized kwargs hold the connection id and plain parameters only, never a credential.

    :param sonarly_conn_id: the Sonarly connection id.
    :param account_group_id: the account group whose quota is checked.
    :param list_type: the ``listType`` to ask for, or None.
    :param min_remaining: the smallest ``remaining`` that makes the quota usable.
    :param reset_at: when the quota resets, from the last check (timezone-aware), or None.
    :param poke_interval: seconds between checks when the reset time is unknown.
    :param jitter: the largest random delay after a reset, in seconds.
    :param hook_params: :class:`~airflow_provider_quota.hooks.base.HttpSettings` for the hook.
    :param deadline: when the sensor times out; None for never.
    """

    def __init__(
        self,
        *,
        sonarly_conn_id: str,
        account_group_id: str,
        list_type: str | None,
        min_remaining: int,
        reset_at: datetime | None,
        poke_interval: float,
        jitter: float = 5.0,
        hook_params: dict[str, Any] | None = None,
        deadline: datetime | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sonarly_conn_id = sonarly_conn_id
        self.account_group_id = account_group_id
        self.list_type = list_type
        self.min_remaining = min_remaining
        self.reset_at = reset_at
        self.poke_interval = poke_interval
        self.jitter = jitter
        self.hook_params = dict(hook_params or {})
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_quota.triggers.sonarly.SonarlyQuotaResetTrigger",
            {
                "sonarly_conn_id": self.sonarly_conn_id,
                "account_group_id": self.account_group_id,
                "list_type": self.list_type,
                "min_remaining": self.min_remaining,
                "reset_at": self.reset_at,
                "poke_interval": self.poke_interval,
                "jitter": self.jitter,
                "hook_params": self.hook_params,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_quota.hooks.sonarly import SonarlyHook

        hook = SonarlyHook(self.sonarly_conn_id, **self.hook_params)
        now = wall_clock()
        # A reset already past (a late start, a triggerer outage) is checked at once.
        wake_at = now if self.reset_at is not None and self.reset_at <= now else self._next(self.reset_at, 0)
        failures = checks = 0
        while True:
            if self.deadline is not None and wake_at > self.deadline:
                yield TriggerEvent(self._timeout_event(wake_at, checks))
                return
            self.log.info("Next check of the prospecting quota of %s at %s", self.account_group_id, wake_at)
            await sleep_until(wake_at)
            checks += 1
            try:
                quota = await hook.aget_prospecting_quota(self.account_group_id, self.list_type)
            except Exception as exc:
                failures += 1
                permanent = is_permanent(exc)
                if permanent or failures >= MAX_CONSECUTIVE_FAILURES:
                    message = f"{exc} (check {checks}, failure {failures} in a row)"
                    yield TriggerEvent(
                        {"status": "error", "fail_fast": permanent, "message": message, "checks": checks}
                    )
                    return
                self.log.warning("Quota check %d failed (%s); failure %d in a row", checks, exc, failures)
                # A Retry-After too long for the hook to wait in place is still the server's wish.
                wake_at = max(self._next(None, failures), later(wall_clock(), getattr(exc, "retry_after", None) or 0))
                continue
            failures = 0
            if quota.is_usable(self.min_remaining):
                xcom = {**quota.model_dump(mode="json"), "granted": self.min_remaining}
                yield TriggerEvent({"status": "success", "xcom": xcom, "checks": checks})
                return
            self.log.info(
                "Quota of %s still not usable (exhausted=%s, remaining=%d, need %d); resets at %s",
                self.account_group_id,
                quota.exhausted,
                quota.remaining,
                self.min_remaining,
                quota.reset_at,
            )
            wake_at = self._next(quota.reset_at, 0)

    def _next(self, reset_at: datetime | None, failures: int) -> datetime:
        """Just after the reset; when unknown, after poke_interval, doubled for each failure in a row."""
        now = wall_clock()
        backoff = min(self.poke_interval * 2**failures, max(self.poke_interval, MAX_FAILURE_BACKOFF_SECONDS))
        return after_reset(reset_at, now=now, jitter=self.jitter) or later(now, max(backoff, MIN_INTERVAL_SECONDS))

    def _timeout_event(self, wake_at: datetime, checks: int) -> dict[str, Any]:
        message = (
            f"Sensor timed out: the next useful check of the prospecting quota is at {wake_at.isoformat()}, "
            f"after the sensor's timeout (at {self.deadline.isoformat() if self.deadline else 'never'})"
        )
        return {"status": "timeout", "message": message, "checks": checks}
