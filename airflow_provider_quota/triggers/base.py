"""What the provider's triggers share: waiting on the wall clock, in steps, without blocking the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import timezone

from airflow_provider_quota.exceptions import is_permanent
from airflow_provider_quota.utils.timing import MIN_INTERVAL_SECONDS, after_reset, later

if TYPE_CHECKING:
    from airflow_provider_quota.sensors.base import GateCheck

#: The longest single asyncio.sleep; the wall clock is read again after each one.
MAX_SLEEP_STEP_SECONDS = 600.0
#: Failed checks in a row after which a trigger gives up (each check is up to ``max_attempts`` requests).
MAX_CONSECUTIVE_FAILURES = 3
#: The longest wait between two checks after failures.
MAX_FAILURE_BACKOFF_SECONDS = 3600.0


def wall_clock() -> datetime:
    """The wall clock, timezone-aware (what time travel moves in tests)."""
    return timezone.utcnow()


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def sleep_until(wake_at: datetime, *, unless: asyncio.Future[Any] | None = None) -> None:
    """
    Sleep in short steps against the wall clock, so that a long wait survives clock jumps and suspends.

    :param wake_at: when to wake up.
    :param unless: a future that ends the sleep early when it is done.
    """
    while (remaining := (wake_at - wall_clock()).total_seconds()) > 0 and not (unless and unless.done()):
        step = asyncio.ensure_future(_sleep(min(remaining, MAX_SLEEP_STEP_SECONDS)))
        try:
            await (step if unless is None else asyncio.wait((step, unless), return_when=asyncio.FIRST_COMPLETED))
        finally:
            step.cancel()


def next_check_at(resets_at: datetime | None, *, failures: int, poke_interval: float, jitter: float) -> datetime:
    """Just after the reset; when unknown, after ``poke_interval``, doubled for each failure in a row (capped)."""
    now = wall_clock()
    backoff = min(poke_interval * 2 ** min(failures, 16), max(poke_interval, MAX_FAILURE_BACKOFF_SECONDS))
    return after_reset(resets_at, now=now, jitter=jitter) or later(now, max(backoff, MIN_INTERVAL_SECONDS))


async def wait_until_usable(
    check: Callable[[], Awaitable[GateCheck]],
    *,
    resets_at: datetime | None,
    poke_interval: float,
    jitter: float,
    deadline: datetime | None,
    what: str,
    log: Any,
) -> dict[str, Any]:
    """
    The loop of a gate's trigger: sleep until the quota can have changed, check, until it is usable.

    It sleeps until ``resets_at`` plus a grace and a random jitter (at once when ``resets_at`` is
    already past, e.g. after a triggerer outage), then calls ``check`` (one paid request). Still
    not usable: it sleeps until the check's new ``resets_at``, or ``poke_interval`` when there is
    none. A failed check is retried after a doubling backoff (or the server's longer
    ``Retry-After``); :data:`MAX_CONSECUTIVE_FAILURES` in a row, or a permanent error, end it. Every
    path through the loop sleeps or ends.

    :param check: one check of the quota.
    :param resets_at: when the last check said the quota resets, or None.
    :param poke_interval: seconds between checks when the reset time is unknown.
    :param jitter: the largest random delay after a reset, in seconds.
    :param deadline: when the sensor times out; None for never.
    :param what: the quota, for the log and the messages, e.g. "the prospecting quota of ag_1".
    :param log: the trigger's logger (``self.log``).
    :return: the event payload the gate's ``execute_complete`` reads: ``{"status": "success",
        "xcom", "checks"}``, ``{"status": "error", "message", "fail_fast", "checks"}`` or
        ``{"status": "timeout", "message", "checks"}``.
    """
    now = wall_clock()
    due = resets_at is not None and resets_at <= now
    wake_at = now if due else next_check_at(resets_at, failures=0, poke_interval=poke_interval, jitter=jitter)
    failures = checks = 0
    while True:
        if deadline is not None and wake_at > deadline:
            message = (
                f"Sensor timed out: the next useful check of {what} is at {wake_at.isoformat()}, "
                f"after the sensor's timeout (at {deadline.isoformat()})"
            )
            return {"status": "timeout", "message": message, "checks": checks}
        log.info("Next check of %s at %s", what, wake_at)
        await sleep_until(wake_at)
        checks += 1
        try:
            last = await check()
        except Exception as exc:
            failures += 1
            permanent = is_permanent(exc)
            if permanent or failures >= MAX_CONSECUTIVE_FAILURES:
                message = f"{exc} (check {checks}, failure {failures} in a row)"
                return {"status": "error", "fail_fast": permanent, "message": message, "checks": checks}
            log.warning("Check %d of %s failed (%s); failure %d in a row", checks, what, exc, failures)
            # A Retry-After too long for the hook to wait in place is still the server's wish.
            backoff = next_check_at(None, failures=failures, poke_interval=poke_interval, jitter=jitter)
            wake_at = max(backoff, later(wall_clock(), getattr(exc, "retry_after", None) or 0))
            continue
        failures = 0
        if last.usable:
            return {"status": "success", "xcom": last.xcom, "checks": checks}
        log.info("%s", last.summary)
        wake_at = next_check_at(last.resets_at, failures=0, poke_interval=poke_interval, jitter=jitter)
