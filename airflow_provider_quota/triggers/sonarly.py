"""Trigger that sleeps until a Sonarly prospecting quota resets, then checks it once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import timezone
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_quota.exceptions import is_permanent
from airflow_provider_quota.timing import seconds_until_next_check

#: The longest single asyncio.sleep; the wall clock is read again after each one.
MAX_SLEEP_STEP_SECONDS = 600.0
#: The longest wait between two checks after failures.
MAX_FAILURE_BACKOFF_SECONDS = 3600.0


def _now() -> datetime:
    return timezone.utcnow()


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class SonarlyQuotaResetTrigger(BaseTrigger):
    """
    Sleep until the prospecting quota resets, check it once, and fire when it is usable.

    The trigger sleeps until ``reset_at`` plus a short grace and a random jitter, then makes
    one quota request. If the quota is still not usable (the reset moved, clock skew), it
    sleeps until the new ``resetAt``, or ``poke_interval`` when there is none. Transient
    errors (retried by the hook first) back off exponentially; ``max_consecutive_failures``
    of them in a row, or any permanent error (400, 401, 403, 404), end it with an error
    event. Every path through the loop sleeps or ends. Network I/O is asynchronous.

    Its serialized kwargs hold the connection id and plain parameters only, never a credential.

    :param sonarly_conn_id: the Sonarly connection id.
    :param account_group_id: the account group whose quota is checked.
    :param list_type: the ``listType`` to ask for, or None.
    :param min_remaining: the smallest ``remaining`` that makes the quota usable.
    :param reset_at: when the quota resets, from the last check (timezone-aware), or None.
    :param poke_interval: seconds between checks when the reset time is unknown.
    :param jitter: the largest random delay after a reset, in seconds.
    :param max_consecutive_failures: failed checks in a row before the trigger gives up.
    :param hook_params: timeouts and retry settings for :class:`SonarlyHook` (numbers only).
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
        max_consecutive_failures: int = 3,
        hook_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sonarly_conn_id = sonarly_conn_id
        self.account_group_id = account_group_id
        self.list_type = list_type
        self.min_remaining = min_remaining
        self.reset_at = reset_at
        self.poke_interval = poke_interval
        self.jitter = jitter
        self.max_consecutive_failures = max_consecutive_failures
        self.hook_params = dict(hook_params or {})

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
                "max_consecutive_failures": self.max_consecutive_failures,
                "hook_params": self.hook_params,
            },
        )

    async def _sleep_until(self, wake_at: datetime) -> None:
        # Short steps against the wall clock, so a long wait survives clock jumps and suspends.
        while (remaining := (wake_at - _now()).total_seconds()) > 0:
            await _sleep(min(remaining, MAX_SLEEP_STEP_SECONDS))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_quota.hooks.sonarly import SonarlyHook

        hook = SonarlyHook(self.sonarly_conn_id, **self.hook_params)
        reset_at = self.reset_at
        retry_not_before: datetime | None = None
        failures = checks = 0
        while True:
            fallback = min(self.poke_interval * 2**failures, max(self.poke_interval, MAX_FAILURE_BACKOFF_SECONDS))
            now = _now()
            delay = seconds_until_next_check(reset_at, now=now, fallback=fallback, jitter=self.jitter)
            if retry_not_before is not None:
                delay = max(delay, (retry_not_before - now).total_seconds())
                retry_not_before = None
            self.log.info("Next check of the prospecting quota of %s in %.1f s", self.account_group_id, delay)
            await self._sleep_until(now + timedelta(seconds=delay))
            checks += 1
            try:
                quota = await hook.aget_prospecting_quota(self.account_group_id, self.list_type)
            except Exception as exc:
                failures += 1
                permanent = is_permanent(exc)
                if permanent or failures >= self.max_consecutive_failures:
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "fail_fast": permanent,
                            "message": f"{exc} (check {checks}, failure {failures} in a row)",
                            "checks": checks,
                        }
                    )
                    return
                self.log.warning("Quota check %d failed (%s); failure %d in a row", checks, exc, failures)
                reset_at = None
                # A Retry-After too long for the hook to wait in place is still the server's wish.
                server_wait = getattr(exc, "retry_after", None)
                retry_not_before = _now() + timedelta(seconds=server_wait) if server_wait else None
                continue
            failures = 0
            if quota.is_usable(self.min_remaining):
                yield TriggerEvent({"status": "success", "quota": quota.model_dump(mode="json"), "checks": checks})
                return
            self.log.info(
                "Quota of %s still not usable (exhausted=%s, remaining=%d, need %d); resets at %s",
                self.account_group_id,
                quota.exhausted,
                quota.remaining,
                self.min_remaining,
                quota.reset_at,
            )
            reset_at = quota.reset_at
